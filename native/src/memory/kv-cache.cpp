#include "memory/kv-cache.h"

#include <cstring>

namespace om {

kv_cache::kv_cache(const text_hparams & hp, const std::vector<int32_t> & capacity, ggml_type type, bool hidden,
                   ggml_backend_buffer_type_t buft)
    : type_(type) {
    ggml_init_params ip = {ggml_tensor_overhead() * size_t(3 * hp.n_layer + 1), nullptr, /*no_alloc=*/true};
    ctx_ = ggml_init(ip);
    for (int32_t il = 0; il < hp.n_layer; ++il) {
        const int64_t rows = capacity[size_t(il)];
        k_.push_back(ggml_new_tensor_2d(ctx_, type, hp.n_embd_kv(), rows));
        v_.push_back(ggml_new_tensor_2d(ctx_, type, hp.n_embd_kv(), rows));
        ggml_format_name(k_.back(), "cache_k_l%d", il);
        ggml_format_name(v_.back(), "cache_v_l%d", il);
        if (hidden) {
            hidden_.push_back(ggml_new_tensor_2d(ctx_, type, hp.n_embd, rows));
            ggml_format_name(hidden_.back(), "cache_h_l%d", il);
        }
    }
    rows_.resize(size_t(hp.n_layer));
    buffer_ = ggml_backend_alloc_ctx_tensors_from_buft(ctx_, buft);
    if (buffer_ == nullptr) {
        size_t total = 0;
        for (ggml_tensor * t = ggml_get_first_tensor(ctx_); t != nullptr; t = ggml_get_next_tensor(ctx_, t)) {
            total += ggml_nbytes(t);
        }
        ggml_free(ctx_);
        fail(OM_STATUS_BACKEND_ERROR, "cannot allocate %.1f MiB of %s memory for the stream; use a smaller n_ctx "
             "or budget", double(total) / (1 << 20), ggml_backend_buft_name(buft));
    }
    // Rows beyond n_rows are never read (the attention views stop at n_rows), but zeroing keeps the
    // buffer free of NaN bit patterns that a future view mistake would otherwise turn into garbage.
    ggml_backend_buffer_clear(buffer_, 0);
}

kv_cache::~kv_cache() {
    ggml_backend_buffer_free(buffer_);
    ggml_free(ctx_);
}

size_t kv_cache::bytes() const { return ggml_backend_buffer_get_size(buffer_); }

size_t kv_cache::row_bytes(int32_t il) const {
    size_t b = k_[size_t(il)]->nb[1] + v_[size_t(il)]->nb[1];
    if (!hidden_.empty()) {
        b += hidden_[size_t(il)]->nb[1];
    }
    return b;
}

bool kv_cache::has_room(int32_t n) const {
    for (int32_t il = 0; il < n_layer(); ++il) {
        if (int64_t(n_rows(il)) + n > capacity(il)) {
            return false;
        }
    }
    return true;
}

void kv_cache::commit(const std::vector<row_meta> & added) {
    for (auto & r : rows_) {
        r.insert(r.end(), added.begin(), added.end());
    }
}

void kv_cache::drop_from(int32_t n_tokens) {
    for (auto & r : rows_) {
        while (!r.empty() && r.back().seq >= n_tokens) {
            r.pop_back();
        }
        if (!r.empty()) {
            r.back().next_cos_known = false;
        }
        for (row_meta & m : r) {   // the tokens fed again get the dropped ones' seq
            if (m.patch_next_seq >= n_tokens) {
                m.patch_next_seq = -1;
            }
        }
    }
}

kv_cache::gather_inputs kv_cache::build_gather(ggml_context * ctx, ggml_cgraph * gf,
                                               const std::vector<std::vector<int32_t>> & kept_by_layer) const {
    gather_inputs in;
    for (int32_t il = 0; il < n_layer(); ++il) {
        const std::vector<int32_t> & kept = kept_by_layer[size_t(il)];
        if (kept.empty() || int32_t(kept.size()) == n_rows(il)) {
            continue;   // nothing dropped, or nothing left to move
        }
        in.layers.push_back(il);
        ggml_tensor * idx = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, int64_t(kept.size()));
        ggml_set_input(idx);
        in.kept.push_back(idx);
        for (ggml_tensor * store : {k(il), v(il), hidden(il)}) {
            if (store == nullptr) {
                continue;
            }
            // get_rows reads into a fresh tensor before the copy writes the store's front: no overlap hazard
            ggml_tensor * live = ggml_view_2d(ctx, store, store->ne[0], n_rows(il), store->nb[1], 0);
            ggml_tensor * picked = ggml_get_rows(ctx, live, idx);
            ggml_tensor * front = ggml_view_2d(ctx, store, store->ne[0], int64_t(kept.size()), store->nb[1], 0);
            ggml_build_forward_expand(gf, ggml_cpy(ctx, picked, front));
        }
    }
    return in;
}

void kv_cache::gather_in_place(const std::vector<std::vector<int32_t>> & kept_by_layer) {
    for (int32_t il = 0; il < n_layer(); ++il) {
        const std::vector<int32_t> & kept = kept_by_layer[size_t(il)];
        for (ggml_tensor * store : {k(il), v(il), hidden(il)}) {
            if (store == nullptr) {
                continue;
            }
            char * base = static_cast<char *>(store->data);
            const size_t row = store->nb[1];
            // kept is ascending, so kept[i] >= i: each block moves towards the front, over rows already moved
            // or dropped, never over a kept row still to move
            for (size_t i = 0; i < kept.size();) {
                size_t run = 1;
                while (i + run < kept.size() && kept[i + run] == kept[i] + int32_t(run)) {
                    ++run;
                }
                if (size_t(kept[i]) != i) {
                    std::memmove(base + i * row, base + size_t(kept[i]) * row, run * row);
                }
                i += run;
            }
        }
    }
}

void kv_cache::keep_rows(int32_t il, const std::vector<int32_t> & kept) {
    std::vector<row_meta> & rows = rows_[size_t(il)];
    std::vector<row_meta> survivors;
    survivors.reserve(kept.size());
    for (size_t i = 0; i < kept.size(); ++i) {
        survivors.push_back(rows[size_t(kept[i])]);
        if (i + 1 == kept.size() || kept[i + 1] != kept[i] + 1) {
            survivors.back().next_cos_known = false;   // another row follows it now, or none
        }
    }
    rows = std::move(survivors);
}

} // namespace om
