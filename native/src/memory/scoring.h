// The signals the cache manager scores rows with, as ggml graph pieces shared by the decoder graph (during
// prefill), the compaction pass and om_memory_select.
#pragma once

#include <ggml.h>

#include <vector>

namespace om {

// What a batch's prefill graph measures for the cache manager: the layers whose attention received it
// computes (empty: none), from how many of the batch's queries (0: all of them).
struct score_request {
    std::vector<bool> layers;
    int32_t           n_queries = 0;
};

// The head-averaged attention logits of a chunk's queries over keys, scaled: (1/H) sum_h q_ih . k_j,g(h) / sqrt(d).
// With grouped-query attention (1/H) sum_h q_h . k_g(h) = (1/H) sum_g (sum_{h in g} q_h) . k_g, so this is one
// product of the group-summed queries with the keys.
//   q: [head_dim, n_head, n_tokens] after RoPE; keys: [head_dim * n_head_kv, n_kv] (any float type)
// Returns F32 [n_kv, n_tokens].
ggml_tensor * head_averaged_logits(ggml_context * ctx, ggml_tensor * q, ggml_tensor * keys, int64_t n_head_kv);

// The name of the nodes attention_received() adds, by which a profile tells them from the model's.
inline constexpr char k_scoring_node_name[] = "om.scoring";

// Attention received by each of n_kv rows from a chunk of queries, with the logits averaged over heads
// before the softmax (method §3): a_j = sum_i softmax_j(head_averaged_logits_ij + mask_ij).
//   mask: [n_kv, n_tokens] (0 or -inf, F16 or F32), or NULL for none
//   n_queries: 0 (or >= n_tokens) sums over every query, as the method does. Otherwise the sum runs over
//   every s-th query back from the last, s = ceil(n_tokens / n_queries) (so at most n_queries of them,
//   spread over the whole chunk), scaled by n_tokens / their number: an estimate of the full sum at a
//   fraction of its cost (the logits and their softmax are most of scoring's).
// Returns F32 [n_kv].
ggml_tensor * attention_received(ggml_context * ctx, ggml_tensor * q, ggml_tensor * keys, ggml_tensor * mask,
                                 int64_t n_head_kv, int64_t n_queries);

// Cosine similarity of row first[i] with row second[i] of vectors [dim, n] (any float type), for first and
// second I32 [m] → F32 [m]: the redundancy score's neighbour pairs (policy.h, neighbour_pairs).
ggml_tensor * row_pair_cosines(ggml_context * ctx, ggml_tensor * vectors, ggml_tensor * first, ggml_tensor * second);

} // namespace om
