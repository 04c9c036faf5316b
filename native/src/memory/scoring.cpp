#include "memory/scoring.h"

#include <cmath>

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

} // namespace

ggml_tensor * head_averaged_logits(ggml_context * ctx, ggml_tensor * q, ggml_tensor * keys, int64_t n_head_kv) {
    float scale = 0.0f;
    ggml_tensor * logits = summed_logits(ctx, q, keys, n_head_kv, &scale);
    return ggml_scale(ctx, logits, scale);
}

ggml_tensor * attention_received(ggml_context * ctx, ggml_tensor * q, ggml_tensor * keys, ggml_tensor * mask,
                                 int64_t n_head_kv) {
    float scale = 0.0f;
    ggml_tensor * logits = summed_logits(ctx, q, keys, n_head_kv, &scale);
    ggml_tensor * probs = ggml_soft_max_ext(ctx, logits, mask, scale, 0.0f);
    // the sum over queries (probs' second axis) as the outer product with a column of ones: one pass over
    // probs, where transposing it first would copy the whole [n_kv, n_tokens] block through strided reads
    const int64_t n_kv = probs->ne[0], n_tokens = probs->ne[1];
    ggml_tensor * ones = ggml_reshape_2d(ctx, ggml_fill(ctx, ggml_view_1d(ctx, probs, n_tokens, 0), 1.0f), 1, n_tokens);
    return ggml_reshape_1d(ctx, ggml_out_prod(ctx, probs, ones), n_kv);
}

ggml_tensor * adjacent_cosines(ggml_context * ctx, ggml_tensor * vectors) {
    const int64_t dim = vectors->ne[0], n = vectors->ne[1];
    ggml_tensor * unit = vectors->type == GGML_TYPE_F32 ? ggml_cont(ctx, vectors)
                                                        : ggml_cast(ctx, vectors, GGML_TYPE_F32);
    unit = ggml_l2_norm(ctx, unit, 1e-12f);
    ggml_tensor * first = ggml_view_2d(ctx, unit, dim, n - 1, unit->nb[1], 0);
    ggml_tensor * next = ggml_view_2d(ctx, unit, dim, n - 1, unit->nb[1], unit->nb[1]);
    ggml_tensor * dots = ggml_sum_rows(ctx, ggml_mul(ctx, first, next));   // [1, n - 1]
    return ggml_reshape_1d(ctx, dots, n - 1);
}

} // namespace om
