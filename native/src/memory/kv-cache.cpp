#include "memory/kv-cache.h"

namespace om {

kv_cache::kv_cache(const text_hparams & hp, int32_t capacity, ggml_type type, ggml_backend_buffer_type_t buft)
    : capacity_(capacity), type_(type) {
    ggml_init_params ip = {ggml_tensor_overhead() * size_t(2 * hp.n_layer + 1), nullptr, /*no_alloc=*/true};
    ctx_ = ggml_init(ip);
    for (int32_t il = 0; il < hp.n_layer; ++il) {
        ggml_tensor * k = ggml_new_tensor_2d(ctx_, type, hp.n_embd_kv(), capacity);
        ggml_tensor * v = ggml_new_tensor_2d(ctx_, type, hp.n_embd_kv(), capacity);
        ggml_format_name(k, "cache_k_l%d", il);
        ggml_format_name(v, "cache_v_l%d", il);
        k_.push_back(k);
        v_.push_back(v);
    }
    rows_.resize(size_t(hp.n_layer));
    buffer_ = ggml_backend_alloc_ctx_tensors_from_buft(ctx_, buft);
    if (buffer_ == nullptr) {
        ggml_free(ctx_);
        fail(OM_STATUS_BACKEND_ERROR, "cannot allocate %.1f MiB of %s memory for a stream of %d rows per layer; "
             "use a smaller n_ctx", double(2 * hp.n_layer) * double(ggml_row_size(type, hp.n_embd_kv())) *
             capacity / (1 << 20), ggml_backend_buft_name(buft), capacity);
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

bool kv_cache::has_room(int32_t n) const {
    for (const auto & r : rows_) {
        if (int64_t(r.size()) + n > capacity_) {
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
    }
}

} // namespace om
