// The stream memory: per decoder layer, K and V rows on the backend plus host metadata for every row.
//
// Layers own their rows independently (a compaction policy may keep different tokens in different
// layers). Keys are stored after RoPE at their original positions, so dropping or gathering rows never
// re-rotates anything. Rows are appended at the end of each layer; the graph writes them with
// ggml_set_rows at the indices this class hands out, and commit() records them once the graph ran.
#pragma once

#include "model/model.h"

#include <cstdint>
#include <vector>

namespace om {

enum class modality : int8_t {
    text   = 0,  // text and special tokens
    visual = 1,
    audio  = 2,
};

struct row_meta {
    int32_t  seq;      // index of the token in the stream
    int32_t  pos[3];   // M-RoPE position (t, h, w) the key was rotated with
    modality mod;
};

class kv_cache {
public:
    kv_cache(const text_hparams & hp, int32_t capacity, ggml_type type, ggml_backend_buffer_type_t buft);
    ~kv_cache();
    kv_cache(const kv_cache &) = delete;
    kv_cache & operator=(const kv_cache &) = delete;

    int32_t   capacity() const { return capacity_; }
    int32_t   n_layer() const { return int32_t(rows_.size()); }
    int32_t   n_rows(int32_t il) const { return int32_t(rows_[size_t(il)].size()); }
    ggml_type type() const { return type_; }
    size_t    bytes() const;

    // Rows of layer il: K/V storage is [n_embd_kv, capacity]; the first n_rows(il) rows are live.
    ggml_tensor * k(int32_t il) const { return k_[size_t(il)]; }
    ggml_tensor * v(int32_t il) const { return v_[size_t(il)]; }
    const std::vector<row_meta> & rows(int32_t il) const { return rows_[size_t(il)]; }

    // Whether every layer has room for n more rows.
    bool has_room(int32_t n) const;

    // Records rows the last graph wrote after each layer's live rows (same metadata in every layer).
    void commit(const std::vector<row_meta> & added);

    // Drops, in every layer, the rows of tokens with seq >= n_tokens (rollback of a feed or a question).
    // Such rows are always at the end of a layer because rows are appended in stream order.
    void drop_from(int32_t n_tokens);

private:
    int32_t capacity_;
    ggml_type type_;
    ggml_context * ctx_ = nullptr;
    ggml_backend_buffer_t buffer_ = nullptr;
    std::vector<ggml_tensor *> k_, v_;
    std::vector<std::vector<row_meta>> rows_;
};

} // namespace om
