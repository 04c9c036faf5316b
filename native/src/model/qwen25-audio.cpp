#include "model/qwen25-audio.h"

#include "model/graph-ops.h"

#include <cmath>

namespace om {

int32_t audio_chunk_tokens(int32_t n_frames) {
    const int32_t after_conv = (n_frames - 1) / 2 + 1;
    return after_conv / 2;
}

namespace {

// 1-D convolution of x [T, C_in] with kernel [K, C_in, C_out] and zero padding 1, then bias and exact GELU.
// Unfolded in F32 (ggml_conv_1d unfolds in F16, which would cost the encoder its precision).
ggml_tensor * conv1d_gelu(ggml_context * ctx, ggml_tensor * kernel, ggml_tensor * bias, ggml_tensor * x, int stride) {
    ggml_tensor * cols = ggml_im2col(ctx, kernel, x, stride, 0, 1, 0, 1, 0, false, GGML_TYPE_F32);  // [C_in*K, T_out]
    ggml_tensor * k = kernel->type == GGML_TYPE_F32 ? kernel : ggml_cast(ctx, kernel, GGML_TYPE_F32);
    k = ggml_reshape_2d(ctx, k, kernel->ne[0] * kernel->ne[1], kernel->ne[2]);
    ggml_tensor * y = ggml_mul_mat(ctx, ggml_reshape_2d(ctx, cols, cols->ne[0], cols->ne[1]), k);  // [T_out, C_out]
    y = ggml_add(ctx, y, bias);                                              // bias [1, C_out]
    return ggml_gelu_erf(ctx, y);
}

} // namespace

audio_graph build_audio_graph(ggml_context * ctx, ggml_cgraph * gf, const audio_tower & a, int32_t n_frames) {
    audio_graph g;
    g.mel = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_frames, a.n_mel);
    ggml_set_input(g.mel);

    ggml_tensor * x = conv1d_gelu(ctx, a.conv1_w, a.conv1_b, g.mel, 1);
    x = conv1d_gelu(ctx, a.conv2_w, a.conv2_b, x, 2);                       // [T, d]
    const int64_t T = x->ne[0], d = a.n_embd, hd = d / a.n_head;
    x = ggml_cont(ctx, ggml_transpose(ctx, x));                             // [d, T]
    x = ggml_add(ctx, x, ggml_view_2d(ctx, a.pos_embd, d, T, a.pos_embd->nb[1], 0));

    const float scale = 1.0f / std::sqrt(float(hd));
    for (const audio_layer & L : a.layers) {
        ggml_tensor * h = layer_norm(ctx, x, L.ln1_w, L.ln1_b, a.eps);
        ggml_tensor * q = ggml_reshape_3d(ctx, linear(ctx, L.wq, L.bq, h), hd, a.n_head, T);
        ggml_tensor * k = ggml_reshape_3d(ctx, linear(ctx, L.wk, nullptr, h), hd, a.n_head, T);
        ggml_tensor * v = ggml_reshape_3d(ctx, linear(ctx, L.wv, L.bv, h), hd, a.n_head, T);
        ggml_tensor * o = encoder_attention(ctx, q, k, v, nullptr, scale);  // the whole chunk: one sequence
        x = ggml_add(ctx, x, linear(ctx, L.wo, L.bo, o));

        h = layer_norm(ctx, x, L.ln2_w, L.ln2_b, a.eps);
        h = ggml_gelu_erf(ctx, linear(ctx, L.ffn_up_w, L.ffn_up_b, h));
        x = ggml_add(ctx, x, linear(ctx, L.ffn_down_w, L.ffn_down_b, h));
    }

    x = ggml_cont(ctx, ggml_transpose(ctx, x));                             // [T, d]
    x = ggml_pool_1d(ctx, x, GGML_OP_POOL_AVG, 2, 2, 0);                    // [T/2, d]
    x = ggml_cont(ctx, ggml_transpose(ctx, x));                             // [d, T/2]
    x = layer_norm(ctx, x, a.post_ln_w, a.post_ln_b, a.eps);
    g.out = linear(ctx, a.proj_w, a.proj_b, x);
    ggml_set_output(g.out);
    ggml_build_forward_expand(gf, g.out);
    return g;
}

} // namespace om
