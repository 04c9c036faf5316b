// The Qwen2 text decoder with multi-section rotary embedding (M-RoPE), as in the Qwen2.5-Omni thinker
// (GGUF architecture "qwen2vl"): RMSNorm, q/k/v with biases, GQA, SwiGLU, final norm and LM head.
#pragma once

#include "memory/kv-cache.h"
#include "memory/scoring.h"
#include "model/model.h"

#include <vector>

namespace om {

// The graph inputs of one evaluated batch and where its logits come out.
struct decoder_graph {
    struct slot {                       // layers with the same number of live rows share these inputs
        int32_t       n_past;
        ggml_tensor * write_idx;        // I64 [n_tokens]: rows the new K/V go to
        ggml_tensor * mask;             // F16/F32 [n_past + n_tokens, n_tokens]: 0 or -inf
    };
    int32_t             n_tokens = 0;
    ggml_tensor *       tokens = nullptr;     // I32 [n_tokens], or
    ggml_tensor *       embd = nullptr;       // F32 [n_embd, n_tokens]: inputs given as embeddings
    ggml_tensor *       positions = nullptr;  // I32 [4*n_tokens], section-major (t..., h..., w..., 0...)
    std::vector<slot>   slots;
    ggml_tensor *       logits = nullptr;     // F32 [n_vocab, 1]: the last token's
    // per layer, F32 [n_past + n_tokens]: attention each row received from this batch's queries (the cache
    // manager's importance signal), or NULL where not asked for
    std::vector<ggml_tensor *> received;
    // per layer, when calibrating: F32 [n_kv, n_q] head-averaged logits of the batch's last n_q queries, and
    // F32 [n_embd, n_tokens] the layer's input hidden states
    std::vector<ggml_tensor *> calib_logits, calib_inputs;
};

// Builds the forward graph of n_tokens new inputs (token ids, or embeddings when from_embeddings) over
// the stream memory `kv` into gf. The K/V of the new tokens are written into kv's storage at each layer's
// next rows (and each layer's input hidden states, where kv stores them). flash: ggml's flash-attention
// kernel (F16 memory) instead of an explicit softmax(QK^T)V (F32 memory, the exact reference path).
// scoring: where (and from how many queries) to compute the attention received. calibrate: also output the
// signals of the budget allocation (memory/calibration.h).
decoder_graph build_qwen2vl_graph(ggml_context * ctx, ggml_cgraph * gf, const om_model & model,
                                  const kv_cache & kv, int32_t n_tokens, bool from_embeddings, bool flash,
                                  const score_request & scoring, bool calibrate);

// Uploads the inputs (token ids or embeddings [n_tokens][n_embd]), positions ([n_tokens][3]: t, h, w),
// write indices and causal masks into the graph, after the scheduler allocated them.
void set_qwen2vl_inputs(const decoder_graph & g, const int32_t * tokens, const float * embeddings,
                        const int32_t * positions);

} // namespace om
