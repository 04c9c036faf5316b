// Graph pieces the model graphs share: norms, a linear layer, and (for the encoders) bidirectional attention over
// independent sequences of equal length (audio chunks, vision windows, vision frames).
#pragma once

#include "ggml.h"

namespace om {

inline ggml_tensor * layer_norm(ggml_context * ctx, ggml_tensor * x, ggml_tensor * w, ggml_tensor * b, float eps) {
    return ggml_add(ctx, ggml_mul(ctx, ggml_norm(ctx, x, eps), w), b);
}

inline ggml_tensor * rms_norm(ggml_context * ctx, ggml_tensor * x, ggml_tensor * w, float eps) {
    return ggml_mul(ctx, ggml_rms_norm(ctx, x, eps), w);
}

// w [n_in, n_out], x [n_in, n] -> [n_out, n]; b [n_out] or null.
inline ggml_tensor * linear(ggml_context * ctx, ggml_tensor * w, ggml_tensor * b, ggml_tensor * x) {
    ggml_tensor * y = ggml_mul_mat(ctx, w, x);
    return b != nullptr ? ggml_add(ctx, y, b) : y;
}

// Attention of every token to every token of its own sequence: q, k, v [head_dim, n_head, n_tokens, n_seq]
// -> [head_dim * n_head, n_tokens * n_seq]. mask: F32 [n_tokens, n_tokens, 1, n_seq] added to the scaled
// scores (-inf hides a key from a query), or null.
inline ggml_tensor * encoder_attention(ggml_context * ctx, ggml_tensor * q, ggml_tensor * k, ggml_tensor * v,
                                       ggml_tensor * mask, float scale) {
    const int64_t hd = q->ne[0], n_head = q->ne[1], n_tokens = q->ne[2], n_seq = q->ne[3];
    q = ggml_permute(ctx, q, 0, 2, 1, 3);                                   // [hd, T, H, S]
    k = ggml_permute(ctx, k, 0, 2, 1, 3);
    ggml_tensor * vt = ggml_cont(ctx, ggml_permute(ctx, v, 1, 2, 0, 3));   // [T, hd, H, S]
    ggml_tensor * kq = ggml_mul_mat(ctx, k, q);                             // [T_k, T_q, H, S]
    ggml_prec_set_acc(kq, GGML_PREC_F32);
    kq = ggml_soft_max_ext(ctx, kq, mask, scale, 0.0f);
    ggml_tensor * o = ggml_mul_mat(ctx, vt, kq);                            // [hd, T_q, H, S]
    o = ggml_cont(ctx, ggml_permute(ctx, o, 0, 2, 1, 3));                   // [hd, H, T, S]
    return ggml_reshape_2d(ctx, o, hd * n_head, n_tokens * n_seq);
}

} // namespace om
