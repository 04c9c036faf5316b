// The cache manager: a stream's memory (kv_cache) under a policy and a per-layer budget.
//
// After every chunk of media the stream asks compact(): each layer whose media rows exceed its budget, or
// whose text after the first media row exceeds the text cap, gets its kept rows chosen by the policy and
// gathered to the front of its storage on the backend. The attention each row received (for the policies
// that need it) comes out of the prefill graph of the chunk: to_score() says where, add_received()
// collects it. Redundancy (neighbour cosines) is computed here: each row keeps its cosine with the row after
// it (and, under OM_NEIGHBOURS_FRAME, with its patch in the next frame held), measured again only once
// another row follows it.
#pragma once

#include "memory/kv-cache.h"
#include "memory/policy.h"
#include "memory/scoring.h"
#include "omnimem.h"

#include <functional>
#include <memory>
#include <vector>

namespace om {

class byte_writer;
class byte_reader;

// Runs one graph on the stream's scheduler: build(ctx, gf) adds the nodes and returns what uploads the
// inputs once they are allocated; read() copies outputs out after the compute.
using graph_builder = std::function<std::function<void()>(ggml_context *, ggml_cgraph *)>;
using graph_runner = std::function<void(const graph_builder & build, const std::function<void()> & read)>;

class cache_manager {
public:
    cache_manager(const text_hparams & hp, const om_stream_params & params, ggml_backend_buffer_type_t buft);

    kv_cache &       kv() { return *kv_; }
    const kv_cache & kv() const { return *kv_; }
    const om_memory_params & params() const { return params_; }
    bool bounded() const { return !budget_.empty(); }
    int32_t budget_audio(int32_t il) const { return bounded() ? budget_[size_t(il) * 2] : -1; }
    int32_t budget_visual(int32_t il) const { return bounded() ? budget_[size_t(il) * 2 + 1] : -1; }
    int64_t compactions() const { return compactions_; }
    int64_t compactions(int32_t il) const { return layer_compactions_[size_t(il)]; }
    double  score_seconds() const { return t_score_; }
    double  compact_seconds() const { return t_compact_; }

    // Records rows the last graph wrote (see kv_cache::commit) and drops rows on rollback.
    void commit(const std::vector<row_meta> & added);
    void drop_from(int32_t n_tokens);

    // What the batches of a feed adding these media rows must measure: the layers whose attention received
    // (empty: none), and from how many of each batch's queries.
    score_request to_score(int64_t n_audio, int64_t n_visual) const;
    // Adds the attention layer il's first n rows received from a batch of the current chunk.
    void add_received(int32_t il, const float * received, int32_t n);

    // Compacts every layer over its budget or text cap; returns whether any row was dropped.
    bool compact(const graph_runner & run);

    // The rows (K, V, redundancy vectors, metadata) and the policy's state; load() expects a manager built
    // with the same parameters and model and fails with OM_STATUS_BAD_FILE on anything inconsistent.
    void save(byte_writer & w) const;
    void load(byte_reader & r);
    const std::vector<int32_t> & budget_table() const { return budget_; }

private:
    // A layer's neighbour pairs and their cosines (empty where the layer is not compacted).
    struct layer_neighbours {
        neighbour_pairs    pairs;
        std::vector<float> cos;
    };
    std::vector<layer_neighbours> neighbour_cosines(const graph_runner & run, const std::vector<bool> & layers);
    std::vector<int32_t> select_layer(int32_t il, const layer_neighbours & neighbours);
    void apply_text_cap(int32_t il, std::vector<int32_t> & kept) const;

    om_memory_params params_;
    std::vector<int32_t> budget_;                 // [n_layer][2] audio, visual; empty: unbounded
    std::unique_ptr<kv_cache> kv_;
    std::vector<std::vector<float>> received_;    // per layer: attention received during the current chunk
    std::vector<int64_t> layer_compactions_;
    int32_t first_media_seq_ = -1;                // text before it (the prompt) is never capped
    int64_t compactions_ = 0;
    double t_score_ = 0.0, t_compact_ = 0.0;
};

} // namespace om
