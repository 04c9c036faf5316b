// The stream memory: per decoder layer, K and V rows on the backend plus host metadata for every row.
//
// Layers own their rows independently (a compaction policy keeps different tokens in different layers) and
// may have different capacities (a budget table gives each layer its own budget). Keys are stored after RoPE
// at their original positions, so dropping or gathering rows never re-rotates anything. Rows are appended at
// the end of each layer; the graph writes them with ggml_set_rows at the indices this class hands out, and
// commit() records them once the graph ran. Compaction gathers the kept rows to the front: in place where the
// storage is host memory, through a graph on other backends.
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
    int32_t  seq;                 // index of the token in the stream
    int32_t  pos[3];              // M-RoPE position (t, h, w) the key was rotated with
    modality mod;
    bool     scored = false;      // whether importance holds a measurement yet
    float    importance = 0.0f;   // running average of the attention the row received
    // The cosine of the row's redundancy vector with the next row's in its layer, once measured. Stored rows
    // never change, so it holds until another row follows this one (compaction, rollback).
    bool     next_cos_known = false;
    float    next_cos = 0.0f;
    // The same for a visual row and the row at its patch position in the next frame its layer holds
    // (OM_NEIGHBOURS_FRAME): that row's seq, -1 while none was measured.
    int32_t  patch_next_seq = -1;
    float    patch_next_cos = 0.0f;
};

class kv_cache {
public:
    // capacity: rows per layer. hidden: also store each row's layer-input hidden state (n_embd values).
    kv_cache(const text_hparams & hp, const std::vector<int32_t> & capacity, ggml_type type, bool hidden,
             ggml_backend_buffer_type_t buft);
    ~kv_cache();
    kv_cache(const kv_cache &) = delete;
    kv_cache & operator=(const kv_cache &) = delete;

    int32_t   capacity(int32_t il) const { return int32_t(k_[size_t(il)]->ne[1]); }
    int32_t   n_layer() const { return int32_t(rows_.size()); }
    int32_t   n_rows(int32_t il) const { return int32_t(rows_[size_t(il)].size()); }
    ggml_type type() const { return type_; }
    size_t    bytes() const;                 // all storage reserved
    size_t    row_bytes(int32_t il) const;   // one row of layer il: K, V and the hidden state if stored

    // Rows of layer il: storage is [width, capacity(il)]; the first n_rows(il) rows are live.
    ggml_tensor * k(int32_t il) const { return k_[size_t(il)]; }
    ggml_tensor * v(int32_t il) const { return v_[size_t(il)]; }
    ggml_tensor * hidden(int32_t il) const { return hidden_.empty() ? nullptr : hidden_[size_t(il)]; }
    const std::vector<row_meta> & rows(int32_t il) const { return rows_[size_t(il)]; }
    std::vector<row_meta> & rows(int32_t il) { return rows_[size_t(il)]; }

    // Whether every layer has room for n more rows.
    bool has_room(int32_t n) const;

    // Records rows the last graph wrote after each layer's live rows (same metadata in every layer).
    void commit(const std::vector<row_meta> & added);

    // Drops, in every layer, the rows of tokens with seq >= n_tokens (rollback of a feed or a question).
    // Such rows are always at the end of a layer because rows are appended in stream order.
    void drop_from(int32_t n_tokens);

    // Adds to gf the gather that moves each layer's kept rows (ascending indices) to its front, for the
    // layers that drop some rows and keep some; the metadata follows in keep_rows() once the graph ran.
    // Returns the layers it moves and their index tensors to upload.
    struct gather_inputs {
        std::vector<int32_t>       layers;
        std::vector<ggml_tensor *> kept;   // I32 [n_kept] per listed layer
    };
    gather_inputs build_gather(ggml_context * ctx, ggml_cgraph * gf,
                               const std::vector<std::vector<int32_t>> & kept_by_layer) const;
    // Whether the storage is host memory, which gather_in_place() moves directly.
    bool on_host() const { return ggml_backend_buffer_is_host(buffer_); }
    // The same move as build_gather's graph, done at once by the CPU on host storage: runs of consecutive
    // kept rows are moved as one block, with no type conversion and no graph to build.
    void gather_in_place(const std::vector<std::vector<int32_t>> & kept_by_layer);
    void keep_rows(int32_t il, const std::vector<int32_t> & kept);

private:
    ggml_type type_;
    ggml_context * ctx_ = nullptr;
    ggml_backend_buffer_t buffer_ = nullptr;
    std::vector<ggml_tensor *> k_, v_, hidden_;
    std::vector<std::vector<row_meta>> rows_;
};

} // namespace om
