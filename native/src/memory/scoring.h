// The signals the cache manager scores rows with, as ggml graph pieces shared by the decoder graph (during
// prefill), the compaction pass and om_memory_select.
#pragma once

#include <ggml.h>

namespace om {

// The head-averaged attention logits of a chunk's queries over keys, scaled: (1/H) sum_h q_ih . k_j,g(h) / sqrt(d).
// With grouped-query attention (1/H) sum_h q_h . k_g(h) = (1/H) sum_g (sum_{h in g} q_h) . k_g, so this is one
// product of the group-summed queries with the keys.
//   q: [head_dim, n_head, n_tokens] after RoPE; keys: [head_dim * n_head_kv, n_kv] (any float type)
// Returns F32 [n_kv, n_tokens].
ggml_tensor * head_averaged_logits(ggml_context * ctx, ggml_tensor * q, ggml_tensor * keys, int64_t n_head_kv);

// Attention received by each of n_kv rows from a chunk of queries, with the logits averaged over heads
// before the softmax (method §3): a_j = sum_i softmax_j(head_averaged_logits_ij + mask_ij).
//   mask: [n_kv, n_tokens] (0 or -inf, F16 or F32), or NULL for none
// Returns F32 [n_kv].
ggml_tensor * attention_received(ggml_context * ctx, ggml_tensor * q, ggml_tensor * keys, ggml_tensor * mask,
                                 int64_t n_head_kv);

// Cosine similarity of each row with the next: vectors [dim, n] (any float type) → F32 [n - 1].
ggml_tensor * adjacent_cosines(ggml_context * ctx, ggml_tensor * vectors);

} // namespace om
