// The per-layer signals the budget allocation is computed from (method §2), accumulated over calibration
// streams: for each layer and for audio keys, visual keys and both together, the attention entropy of a
// chunk's queries over those keys, and the redundancy 1 - mean cosine of adjacent tokens of the modality
// (layer-input hidden states). Entropy here is that of the softmax of the head-averaged logits restricted to
// the modality's keys (causal), in nats: the released reference leaves the signal undefined, and this
// reading uses the same head-averaged logits the importance score uses.
#pragma once

#include "memory/kv-cache.h"

#include <array>
#include <cstdint>
#include <vector>

namespace om {

class calibration {
public:
    static constexpr int k_queries = 32;   // the last queries of each batch that are measured
    enum group { audio = 0, visual = 1, media = 2 };

    explicit calibration(int32_t n_layer) : sums_(size_t(n_layer)) {}

    // logits: [n_q][n_kv] head-averaged scaled logits of the batch's last n_q queries, the first of which sits
    // at row n_kv - n_q; key_mod: [n_kv]. inputs: [n_tokens][n_embd] the layer's input hidden states of the
    // batch, whose modalities are the last n_tokens of key_mod.
    void add(int32_t il, const float * logits, int32_t n_q, int32_t n_kv, const modality * key_mod,
             const float * inputs, int32_t n_tokens, int32_t n_embd);

    // [n_layer][3 groups][2]: mean entropy, mean redundancy; NaN where nothing was measured.
    std::vector<float> means() const;

private:
    struct sums {
        std::array<double, 3> entropy{}, redundancy{};
        std::array<int64_t, 3> n_entropy{}, n_redundancy{};
    };
    std::vector<sums> sums_;
};

} // namespace om
