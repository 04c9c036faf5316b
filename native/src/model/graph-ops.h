// Graph pieces the model graphs share: norms, a linear layer, and (for the encoders) bidirectional attention over
// independent sequences of equal length (audio chunks, vision windows, vision frames).
#pragma once

#include "kernels/packed-matmul.h"

#include "ggml.h"

namespace om {

inline ggml_tensor * layer_norm(ggml_context * ctx, ggml_tensor * x, ggml_tensor * w, ggml_tensor * b, float eps) {
    return ggml_add(ctx, ggml_mul(ctx, ggml_norm(ctx, x, eps), w), b);
}

inline ggml_tensor * rms_norm(ggml_context * ctx, ggml_tensor * x, ggml_tensor * w, float eps) {
    return ggml_mul(ctx, ggml_rms_norm(ctx, x, eps), w);
}

// w [n_in, n_out], x [n_in, n] -> [n_out, n]; b [n_out] or null. Packed weights take our own kernels.
inline ggml_tensor * linear(ggml_context * ctx, ggml_tensor * w, ggml_tensor * b, ggml_tensor * x) {
    ggml_tensor * y = mul_mat(ctx, w, x);
    return b != nullptr ? ggml_add(ctx, y, b) : y;
}

// Attention of every token to every token of its own sequence: q, k, v [head_dim, n_head, n_tokens, n_seq]
// -> [head_dim * n_head, n_tokens * n_seq]. mask: F16 [n_tokens, n_tokens, 1, n_seq] added to the scaled
// scores (-inf hides a key from a query), or null. Flash attention holds the scores of one block of queries
// at a time, so memory grows linearly with n_tokens; with F32 K and V the CPU kernel stays in F32 throughout.
inline ggml_tensor * encoder_attention(ggml_context * ctx, ggml_tensor * q, ggml_tensor * k, ggml_tensor * v,
                                       ggml_tensor * mask, float scale) {
    const int64_t hd = q->ne[0], n_head = q->ne[1], n_tokens = q->ne[2], n_seq = q->ne[3];
    auto heads = [&](ggml_tensor * x) { return ggml_permute(ctx, x, 0, 2, 1, 3); };   // [hd, T, H, S]
    ggml_tensor * o = ggml_flash_attn_ext(ctx, heads(q), heads(k), heads(v), mask, scale, 0.0f, 0.0f);
    ggml_prec_set_acc(o, GGML_PREC_F32);
    return ggml_reshape_2d(ctx, o, hd * n_head, n_tokens * n_seq);                   // o: [hd, H, T, S]
}

} // namespace om
