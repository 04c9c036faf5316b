#include "model/qwen2vl.h"

#include "memory/calibration.h"
#include "memory/scoring.h"
#include "model/graph-ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace om {

// Attention of q [head_dim, n_head, n_tokens] over the first n_kv rows of layer il's memory.
static ggml_tensor * attention(ggml_context * ctx, const kv_cache & kv, int32_t il, const text_hparams & hp,
                               ggml_tensor * q, ggml_tensor * mask, int32_t n_kv, bool flash) {
    const int64_t hd = hp.n_embd_head;
    ggml_tensor * K = kv.k(il);
    ggml_tensor * V = kv.v(il);
    ggml_tensor * k = ggml_view_3d(ctx, K, hd, n_kv, hp.n_head_kv, K->nb[1], ggml_row_size(K->type, hd), 0);
    ggml_tensor * v = ggml_view_3d(ctx, V, hd, n_kv, hp.n_head_kv, V->nb[1], ggml_row_size(V->type, hd), 0);
    q = ggml_permute(ctx, q, 0, 2, 1, 3);                       // [hd, n_tokens, n_head]
    const float scale = 1.0f / std::sqrt(float(hd));
    const int64_t n_tokens = q->ne[1];

    if (flash) {
        ggml_tensor * out = ggml_flash_attn_ext(ctx, q, k, v, mask, scale, 0.0f, 0.0f);
        ggml_prec_set_acc(out, GGML_PREC_F32);
        return ggml_reshape_2d(ctx, out, hd * hp.n_head, n_tokens);  // out: [hd, n_head, n_tokens]
    }
    ggml_tensor * kq = ggml_mul_mat(ctx, k, q);                  // [n_kv, n_tokens, n_head]
    ggml_prec_set_acc(kq, GGML_PREC_F32);
    kq = ggml_soft_max_ext(ctx, kq, mask, scale, 0.0f);
    ggml_tensor * vt = ggml_cont(ctx, ggml_permute(ctx, v, 1, 0, 2, 3));  // [n_kv, hd, n_head_kv]
    ggml_tensor * kqv = ggml_mul_mat(ctx, vt, kq);               // [hd, n_tokens, n_head]
    kqv = ggml_cont(ctx, ggml_permute(ctx, kqv, 0, 2, 1, 3));    // [hd, n_head, n_tokens]
    return ggml_reshape_2d(ctx, kqv, hd * hp.n_head, n_tokens);
}

decoder_graph build_qwen2vl_graph(ggml_context * ctx, ggml_cgraph * gf, const om_model & model,
                                  const kv_cache & kv, int32_t n_tokens, bool from_embeddings, bool flash,
                                  const score_request & scoring, bool calibrate) {
    const text_hparams & hp = model.hparams;
    decoder_graph g;
    g.n_tokens = n_tokens;

    ggml_tensor * x = nullptr;   // [n_embd, n_tokens]
    if (from_embeddings) {
        g.embd = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp.n_embd, n_tokens);
        ggml_set_input(g.embd);
        x = g.embd;
    } else {
        g.tokens = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n_tokens);
        ggml_set_input(g.tokens);
        x = ggml_get_rows(ctx, model.tok_embd, g.tokens);
    }
    g.positions = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, int64_t(n_tokens) * 4);
    ggml_set_input(g.positions);

    g.received.assign(size_t(hp.n_layer), nullptr);
    g.calib_logits.assign(size_t(hp.n_layer), nullptr);
    g.calib_inputs.assign(size_t(hp.n_layer), nullptr);
    std::vector<size_t> slot_of_layer(size_t(hp.n_layer));
    for (int32_t il = 0; il < hp.n_layer; ++il) {
        const int32_t n_past = kv.n_rows(il);
        size_t s = 0;
        while (s < g.slots.size() && g.slots[s].n_past != n_past) {
            ++s;
        }
        if (s == g.slots.size()) {
            decoder_graph::slot sl{n_past, nullptr, nullptr};
            sl.write_idx = ggml_new_tensor_1d(ctx, GGML_TYPE_I64, n_tokens);
            ggml_set_input(sl.write_idx);
            sl.mask = ggml_new_tensor_2d(ctx, flash ? GGML_TYPE_F16 : GGML_TYPE_F32, n_past + n_tokens, n_tokens);
            ggml_set_input(sl.mask);
            g.slots.push_back(sl);
        }
        slot_of_layer[size_t(il)] = s;
    }

    int sections[GGML_MROPE_SECTIONS];
    for (int i = 0; i < GGML_MROPE_SECTIONS; ++i) {
        sections[i] = hp.rope_sections[i];
    }
    auto rope = [&](ggml_tensor * x) {
        return ggml_rope_multi(ctx, x, g.positions, nullptr, hp.n_embd_head, sections, GGML_ROPE_TYPE_MROPE,
                               hp.n_ctx_train, hp.rope_freq_base, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
    };

    for (int32_t il = 0; il < hp.n_layer; ++il) {
        const decoder_layer & L = model.layers[size_t(il)];
        const decoder_graph::slot & sl = g.slots[slot_of_layer[size_t(il)]];

        ggml_tensor * h = rms_norm(ctx, x, L.attn_norm, hp.rms_norm_eps);
        ggml_tensor * q = linear(ctx, L.wq, L.bq, h);
        ggml_tensor * k = linear(ctx, L.wk, L.bk, h);
        ggml_tensor * v = linear(ctx, L.wv, L.bv, h);
        q = rope(ggml_reshape_3d(ctx, q, hp.n_embd_head, hp.n_head, n_tokens));
        k = rope(ggml_reshape_3d(ctx, k, hp.n_embd_head, hp.n_head_kv, n_tokens));

        // write this batch's K/V into the memory before the attention reads it
        ggml_build_forward_expand(gf, ggml_set_rows(ctx, kv.k(il), ggml_reshape_2d(ctx, k, hp.n_embd_kv(), n_tokens),
                                                    sl.write_idx));
        ggml_build_forward_expand(gf, ggml_set_rows(ctx, kv.v(il), v, sl.write_idx));
        if (kv.hidden(il) != nullptr) {
            ggml_build_forward_expand(gf, ggml_set_rows(ctx, kv.hidden(il), x, sl.write_idx));
        }
        const int32_t n_kv = sl.n_past + n_tokens;
        if (!scoring.layers.empty() && scoring.layers[size_t(il)]) {
            ggml_tensor * keys = ggml_view_2d(ctx, kv.k(il), hp.n_embd_kv(), n_kv, kv.k(il)->nb[1], 0);
            g.received[size_t(il)] = attention_received(ctx, q, keys, sl.mask, hp.n_head_kv, scoring.n_queries);
            ggml_set_output(g.received[size_t(il)]);
            ggml_build_forward_expand(gf, g.received[size_t(il)]);
        }
        if (calibrate) {
            const int64_t n_q = std::min<int64_t>(calibration::k_queries, n_tokens);
            ggml_tensor * keys = ggml_view_2d(ctx, kv.k(il), hp.n_embd_kv(), n_kv, kv.k(il)->nb[1], 0);
            ggml_tensor * last_q = ggml_view_3d(ctx, q, q->ne[0], q->ne[1], n_q, q->nb[1], q->nb[2],
                                                q->nb[2] * size_t(n_tokens - n_q));
            g.calib_logits[size_t(il)] = head_averaged_logits(ctx, last_q, keys, hp.n_head_kv);
            g.calib_inputs[size_t(il)] = x;
            for (ggml_tensor * t : {g.calib_logits[size_t(il)], x}) {
                ggml_set_output(t);
                ggml_build_forward_expand(gf, t);
            }
        }

        ggml_tensor * a = attention(ctx, kv, il, hp, q, sl.mask, n_kv, /*flash=*/flash);
        a = mul_mat(ctx, L.wo, a);
        if (il == hp.n_layer - 1) {
            // only the last token's logits are needed: skip the rest of the batch from here on
            a = ggml_view_2d(ctx, a, hp.n_embd, 1, a->nb[1], a->nb[1] * size_t(n_tokens - 1));
            x = ggml_view_2d(ctx, x, hp.n_embd, 1, x->nb[1], x->nb[1] * size_t(n_tokens - 1));
        }
        x = ggml_add(ctx, x, a);

        h = rms_norm(ctx, x, L.ffn_norm, hp.rms_norm_eps);
        ggml_tensor * ffn = ggml_swiglu_split(ctx, mul_mat(ctx, L.ffn_gate, h), mul_mat(ctx, L.ffn_up, h));
        x = ggml_add(ctx, x, mul_mat(ctx, L.ffn_down, ffn));
    }
    x = rms_norm(ctx, x, model.output_norm, hp.rms_norm_eps);
    g.logits = mul_mat(ctx, model.output, x);
    ggml_set_name(g.logits, "logits");
    ggml_set_output(g.logits);
    ggml_build_forward_expand(gf, g.logits);
    return g;
}

// mask [n][n_past + n]: row i sees the n_past memory rows and the batch up to itself. Built in the mask's own
// type: at long contexts it is the largest host buffer of a batch.
template <typename T>
static void fill_causal_mask(std::vector<T> & mask, int64_t n_past, int32_t n, T open, T closed) {
    const int64_t n_kv = n_past + n;
    mask.assign(size_t(n_kv * n), open);
    for (int32_t i = 0; i < n; ++i) {
        std::fill(mask.begin() + i * n_kv + n_past + i + 1, mask.begin() + (i + 1) * n_kv, closed);
    }
}

void set_qwen2vl_inputs(const decoder_graph & g, const int32_t * tokens, const float * embeddings,
                        const int32_t * positions) {
    const int32_t n = g.n_tokens;
    if (g.embd != nullptr) {
        ggml_backend_tensor_set(g.embd, embeddings, 0, ggml_nbytes(g.embd));
    } else {
        ggml_backend_tensor_set(g.tokens, tokens, 0, sizeof(int32_t) * size_t(n));
    }

    std::vector<int32_t> pos(size_t(n) * 4, 0);
    for (int32_t i = 0; i < n; ++i) {
        for (int a = 0; a < 3; ++a) {
            pos[size_t(a) * size_t(n) + size_t(i)] = positions[size_t(i) * 3 + size_t(a)];
        }
    }
    ggml_backend_tensor_set(g.positions, pos.data(), 0, sizeof(int32_t) * pos.size());

    std::vector<float> mask_f32;
    std::vector<ggml_fp16_t> mask_f16;
    for (const decoder_graph::slot & sl : g.slots) {
        std::vector<int64_t> idx(static_cast<size_t>(n));
        for (int32_t i = 0; i < n; ++i) {
            idx[size_t(i)] = sl.n_past + i;
        }
        ggml_backend_tensor_set(sl.write_idx, idx.data(), 0, sizeof(int64_t) * idx.size());
        // memory rows all precede the batch; inside the batch attention is causal
        if (sl.mask->type == GGML_TYPE_F16) {
            fill_causal_mask(mask_f16, sl.n_past, n, ggml_fp32_to_fp16(0.0f),
                             ggml_fp32_to_fp16(-std::numeric_limits<float>::infinity()));
            ggml_backend_tensor_set(sl.mask, mask_f16.data(), 0, sizeof(ggml_fp16_t) * mask_f16.size());
        } else {
            fill_causal_mask(mask_f32, sl.n_past, n, 0.0f, -std::numeric_limits<float>::infinity());
            ggml_backend_tensor_set(sl.mask, mask_f32.data(), 0, sizeof(float) * mask_f32.size());
        }
    }
}

} // namespace om
