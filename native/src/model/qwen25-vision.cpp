#include "model/qwen25-vision.h"

#include "model/graph-ops.h"

#include "ggml-backend.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace om {

vision_layout plan_vision_layout(const vision_tower & v, int32_t t, int32_t h, int32_t w) {
    const int32_t m = v.merge, unit = m * m, hm = h / m, wm = w / m, ws = v.window_cells;
    vision_layout L;
    L.n_patches  = t * h * w;
    L.n_tokens   = t * hm * wm;
    L.n_frames   = t;
    L.window_len = std::min(ws, hm) * std::min(ws, wm) * unit;   // the top-left window is never cut
    L.order.reserve(size_t(L.n_patches));
    L.positions.assign(size_t(L.n_patches) * 4, 0);
    L.raster.resize(size_t(L.n_tokens));
    std::vector<int32_t> starts;   // first row of every window, then the end
    for (int32_t ti = 0; ti < t; ++ti) {
        for (int32_t wr = 0; wr < hm; wr += ws) {
            for (int32_t wc = 0; wc < wm; wc += ws) {
                starts.push_back(int32_t(L.order.size()));
                for (int32_t i = wr; i < std::min(wr + ws, hm); ++i) {
                    for (int32_t j = wc; j < std::min(wc + ws, wm); ++j) {
                        const int32_t cell = (ti * hm + i) * wm + j;   // also the input's merge-unit index
                        L.raster[size_t(cell)] = int32_t(L.order.size()) / unit;
                        for (int32_t k = 0; k < unit; ++k) {
                            const size_t r = L.order.size();
                            L.positions[r] = i * m + k / m;
                            L.positions[size_t(L.n_patches) + r] = j * m + k % m;
                            L.order.push_back(cell * unit + k);
                        }
                    }
                }
            }
        }
    }
    starts.push_back(L.n_patches);
    L.n_windows = int32_t(starts.size()) - 1;

    const int32_t S = L.window_len;
    if (int64_t(L.n_windows) * S == L.n_patches) {
        return L;   // no partial window
    }
    L.slots.assign(size_t(L.n_windows) * size_t(S), 0);
    L.row_slots.resize(size_t(L.n_patches));
    L.slot_mask.assign(size_t(L.n_windows) * size_t(S) * size_t(S), ggml_fp32_to_fp16(0.0f));
    const ggml_fp16_t hidden = ggml_fp32_to_fp16(-std::numeric_limits<float>::infinity());
    for (int32_t wi = 0; wi < L.n_windows; ++wi) {
        const int32_t start = starts[size_t(wi)], len = starts[size_t(wi) + 1] - start;
        for (int32_t s = 0; s < len; ++s) {
            L.slots[size_t(wi) * S + s] = start + s;
            L.row_slots[size_t(start + s)] = wi * S + s;
        }
        ggml_fp16_t * mask = L.slot_mask.data() + size_t(wi) * S * S;
        for (int32_t q = 0; q < S; ++q) {
            std::fill(mask + size_t(q) * S + len, mask + size_t(q + 1) * S, hidden);
        }
    }
    return L;
}

namespace {

ggml_tensor * new_input(ggml_context * ctx, ggml_type type, int64_t n) {
    ggml_tensor * t = ggml_new_tensor_1d(ctx, type, n);
    ggml_set_input(t);
    return t;
}

// The Conv3d kernel as a [OM_IMAGE_PATCH_DIM, n_embd] matrix: the file stores its two temporal slices apart,
// a patch vector is [C][T][14][14], so the slices interleave per channel. F32, so the embedding keeps the
// patches' precision whatever type the file stores the kernel in.
ggml_tensor * patch_kernel(ggml_context * ctx, const vision_tower & v) {
    const int64_t area = int64_t(v.patch_size) * v.patch_size;
    ggml_tensor * slice[2];
    for (int t = 0; t < 2; ++t) {
        ggml_tensor * k = v.patch_embd[t];
        k = k->type == GGML_TYPE_F32 ? k : ggml_cast(ctx, k, GGML_TYPE_F32);
        slice[t] = ggml_reshape_4d(ctx, k, area, 1, 3, v.n_embd);
    }
    ggml_tensor * k = ggml_concat(ctx, slice[0], slice[1], 1);               // [area, 2, 3, n_embd]
    return ggml_reshape_2d(ctx, k, area * 2 * 3, v.n_embd);
}

// Attention within windows. When some window is partial, every window is gathered into a block of
// window_len slots, the padding hidden by the mask, and the result scattered back to the rows.
ggml_tensor * window_attention(ggml_context * ctx, const vision_graph & g, const vision_layout & L,
                               ggml_tensor * q, ggml_tensor * k, ggml_tensor * v, float scale) {
    const int64_t hd = q->ne[0], n_head = q->ne[1], d = hd * n_head;
    if (g.slots == nullptr) {
        auto blocks = [&](ggml_tensor * x) { return ggml_reshape_4d(ctx, x, hd, n_head, L.window_len, L.n_windows); };
        return encoder_attention(ctx, blocks(q), blocks(k), blocks(v), nullptr, scale);
    }
    auto gather = [&](ggml_tensor * x) {
        x = ggml_get_rows(ctx, ggml_reshape_2d(ctx, x, d, L.n_patches), g.slots);   // [d, n_windows * window_len]
        return ggml_reshape_4d(ctx, x, hd, n_head, L.window_len, L.n_windows);
    };
    ggml_tensor * o = encoder_attention(ctx, gather(q), gather(k), gather(v), g.slot_mask, scale);
    return ggml_get_rows(ctx, o, g.row_slots);
}

// Attention over each temporal slice: the slices are consecutive, equally long blocks of rows.
ggml_tensor * frame_attention(ggml_context * ctx, const vision_layout & L, ggml_tensor * q, ggml_tensor * k,
                              ggml_tensor * v, float scale) {
    const int64_t hd = q->ne[0], n_head = q->ne[1], frame = L.n_patches / L.n_frames;
    auto frames = [&](ggml_tensor * x) { return ggml_reshape_4d(ctx, x, hd, n_head, frame, L.n_frames); };
    return encoder_attention(ctx, frames(q), frames(k), frames(v), nullptr, scale);
}

} // namespace

vision_graph build_vision_graph(ggml_context * ctx, ggml_cgraph * gf, const vision_tower & v,
                                const vision_layout & L) {
    const int64_t d = v.n_embd, n_head = v.n_head, hd = d / n_head, N = L.n_patches;
    const bool windowed = std::any_of(v.layers.begin(), v.layers.end(),
                                      [](const vision_layer & l) { return !l.full_attention; });
    vision_graph g;
    g.patches = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, OM_IMAGE_PATCH_DIM, N);
    ggml_set_input(g.patches);
    g.order     = new_input(ctx, GGML_TYPE_I32, N);
    g.positions = new_input(ctx, GGML_TYPE_I32, N * 4);
    g.raster    = new_input(ctx, GGML_TYPE_I32, L.n_tokens);
    if (windowed && !L.slots.empty()) {
        g.slots     = new_input(ctx, GGML_TYPE_I32, int64_t(L.slots.size()));
        g.row_slots = new_input(ctx, GGML_TYPE_I32, N);
        g.slot_mask = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, L.window_len, L.window_len, 1, L.n_windows);
        ggml_set_input(g.slot_mask);
    }

    ggml_tensor * x = ggml_mul_mat(ctx, patch_kernel(ctx, v), ggml_get_rows(ctx, g.patches, g.order));  // [d, N]

    // 2-D rotary embedding: the first head_dim/4 frequencies turn with the patch row, the rest with the column,
    // each section with its own frequencies 10000^(-2i / (head_dim/2)), rotating halves (NeoX) of the whole head
    int sections[GGML_MROPE_SECTIONS] = {int(hd / 4), int(hd / 4), 0, 0};
    auto rope = [&](ggml_tensor * t) {
        return ggml_rope_multi(ctx, t, g.positions, nullptr, int(hd / 2), sections, GGML_ROPE_TYPE_VISION, 0,
                               10000.0f, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
    };
    const float scale = 1.0f / std::sqrt(float(hd));
    for (const vision_layer & l : v.layers) {
        ggml_tensor * h = rms_norm(ctx, x, l.ln1_w, v.eps);
        ggml_tensor * q = rope(ggml_reshape_3d(ctx, linear(ctx, l.wq, l.bq, h), hd, n_head, N));
        ggml_tensor * k = rope(ggml_reshape_3d(ctx, linear(ctx, l.wk, l.bk, h), hd, n_head, N));
        ggml_tensor * val = ggml_reshape_3d(ctx, linear(ctx, l.wv, l.bv, h), hd, n_head, N);
        ggml_tensor * a = l.full_attention ? frame_attention(ctx, L, q, k, val, scale)
                                           : window_attention(ctx, g, L, q, k, val, scale);
        x = ggml_add(ctx, x, linear(ctx, l.wo, l.bo, a));

        h = rms_norm(ctx, x, l.ln2_w, v.eps);
        h = ggml_swiglu_split(ctx, linear(ctx, l.ffn_gate_w, l.ffn_gate_b, h), linear(ctx, l.ffn_up_w, l.ffn_up_b, h));
        x = ggml_add(ctx, x, linear(ctx, l.ffn_down_w, l.ffn_down_b, h));
    }

    // merger: a cell's merge x merge patches are consecutive rows, so a reshape concatenates them
    x = rms_norm(ctx, x, v.post_ln_w, v.eps);
    x = ggml_reshape_2d(ctx, x, d * v.merge * v.merge, L.n_tokens);
    x = ggml_gelu_erf(ctx, linear(ctx, v.mm0_w, v.mm0_b, x));
    x = linear(ctx, v.mm2_w, v.mm2_b, x);                                      // [n_out, n_tokens], window order
    g.out = ggml_get_rows(ctx, x, g.raster);
    ggml_set_output(g.out);
    ggml_build_forward_expand(gf, g.out);
    return g;
}

void set_vision_inputs(const vision_graph & g, const vision_layout & L, const float * patches) {
    ggml_backend_tensor_set(g.patches, patches, 0, ggml_nbytes(g.patches));
    ggml_backend_tensor_set(g.order, L.order.data(), 0, ggml_nbytes(g.order));
    ggml_backend_tensor_set(g.positions, L.positions.data(), 0, ggml_nbytes(g.positions));
    ggml_backend_tensor_set(g.raster, L.raster.data(), 0, ggml_nbytes(g.raster));
    if (g.slots != nullptr) {
        ggml_backend_tensor_set(g.slots, L.slots.data(), 0, ggml_nbytes(g.slots));
        ggml_backend_tensor_set(g.row_slots, L.row_slots.data(), 0, ggml_nbytes(g.row_slots));
        ggml_backend_tensor_set(g.slot_mask, L.slot_mask.data(), 0, ggml_nbytes(g.slot_mask));
    }
}

} // namespace om
