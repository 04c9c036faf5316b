#include "memory/scoring.h"

#include <cmath>
#include <cstring>

namespace om {

namespace {

// (sum_h q_ih . k_j,g(h)) for every key j and query i, and the factor that makes it the head average over
// sqrt(d): the scale is left to the caller, so that a softmax can apply it in the same pass.
ggml_tensor * summed_logits(ggml_context * ctx, ggml_tensor * q, ggml_tensor * keys, int64_t n_head_kv,
                            float * scale) {
    const int64_t head_dim = q->ne[0], n_head = q->ne[1], n_tokens = q->ne[2];
    const int64_t group = n_head / n_head_kv;
    ggml_tensor * summed = q;
    if (group > 1) {
        // [head_dim, group, n_head_kv, n_tokens] → group first → sum it away
        summed = ggml_reshape_4d(ctx, q, head_dim, group, n_head_kv, n_tokens);
        summed = ggml_sum_rows(ctx, ggml_cont(ctx, ggml_permute(ctx, summed, 1, 0, 2, 3)));
    }
    summed = ggml_reshape_2d(ctx, ggml_cont(ctx, summed), head_dim * n_head_kv, n_tokens);
    ggml_tensor * logits = ggml_mul_mat(ctx, keys, summed);               // [n_kv, n_tokens]
    ggml_prec_set_acc(logits, GGML_PREC_F32);
    *scale = 1.0f / (float(n_head) * std::sqrt(float(head_dim)));
    return logits;
}

// The dot product of each column of a with the same column of b ([dim, m] each) → F32 [m].
ggml_tensor * column_dots(ggml_context * ctx, ggml_tensor * a, ggml_tensor * b) {
    return ggml_reshape_1d(ctx, ggml_sum_rows(ctx, ggml_mul(ctx, a, b)), a->ne[1]);
}

// Names every node between the result and the given inputs as scoring's.
void name_scoring_nodes(ggml_tensor * t, const ggml_tensor * q, const ggml_tensor * keys, const ggml_tensor * mask) {
    if (t == nullptr || t == q || t == keys || t == mask || std::strcmp(t->name, k_scoring_node_name) == 0) {
        return;
    }
    ggml_set_name(t, k_scoring_node_name);
    for (ggml_tensor * src : t->src) {
        name_scoring_nodes(src, q, keys, mask);
    }
}

} // namespace

ggml_tensor * head_averaged_logits(ggml_context * ctx, ggml_tensor * q, ggml_tensor * keys, int64_t n_head_kv) {
    float scale = 0.0f;
    ggml_tensor * logits = summed_logits(ctx, q, keys, n_head_kv, &scale);
    return ggml_scale(ctx, logits, scale);
}

ggml_tensor * attention_received(ggml_context * ctx, ggml_tensor * q, ggml_tensor * keys, ggml_tensor * mask,
                                 int64_t n_head_kv, int64_t n_queries) {
    const ggml_tensor * const inputs[3] = {q, keys, mask};
    const int64_t n_tokens = q->ne[2];
    float weight = 1.0f;   // how many of the chunk's queries each measured one stands for
    if (n_queries > 0 && n_queries < n_tokens) {
        // every stride-th query back from the last: at most n_queries of them, reaching the chunk's start
        const int64_t stride = (n_tokens + n_queries - 1) / n_queries;
        n_queries = (n_tokens + stride - 1) / stride;
        const size_t first = size_t(n_tokens - 1 - (n_queries - 1) * stride);
        q = ggml_cont(ctx, ggml_view_3d(ctx, q, q->ne[0], q->ne[1], n_queries, q->nb[1], q->nb[2] * size_t(stride),
                                        q->nb[2] * first));
        if (mask != nullptr) {   // the softmax wants its mask contiguous
            mask = ggml_cont(ctx, ggml_view_2d(ctx, mask, mask->ne[0], n_queries, mask->nb[1] * size_t(stride),
                                               mask->nb[1] * first));
        }
        weight = float(n_tokens) / float(n_queries);
    }
    float scale = 0.0f;
    ggml_tensor * logits = summed_logits(ctx, q, keys, n_head_kv, &scale);
    ggml_tensor * probs = ggml_soft_max_ext(ctx, logits, mask, scale, 0.0f);
    // the sum over queries (probs' second axis) as the outer product with a column of weights: one pass over
    // probs, where transposing it first would copy the whole [n_kv, n_q] block through strided reads
    const int64_t n_kv = probs->ne[0], n_q = probs->ne[1];
    ggml_tensor * weights = ggml_reshape_2d(ctx, ggml_fill(ctx, ggml_view_1d(ctx, probs, n_q, 0), weight), 1, n_q);
    ggml_tensor * received = ggml_reshape_1d(ctx, ggml_out_prod(ctx, probs, weights), n_kv);
    name_scoring_nodes(received, inputs[0], inputs[1], inputs[2]);
    return received;
}

ggml_tensor * row_pair_cosines(ggml_context * ctx, ggml_tensor * vectors, ggml_tensor * first, ggml_tensor * second) {
    // get_rows gives F32 whatever the storage type
    ggml_tensor * a = ggml_l2_norm(ctx, ggml_get_rows(ctx, vectors, first), 1e-12f);
    ggml_tensor * b = ggml_l2_norm(ctx, ggml_get_rows(ctx, vectors, second), 1e-12f);
    return column_dots(ctx, a, b);
}

} // namespace om
