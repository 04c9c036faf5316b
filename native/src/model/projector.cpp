#include "model/projector.h"

#include <functional>

namespace om {

namespace {

// Blocks that attend over whole frames: the file's list, else every n-th block of llama.cpp's window-attention
// period n (its converter writes only that).
// A tower must project into the text model's embedding space.
void check_projection_width(const char * path, const char * what, int32_t n_out, int32_t n_embd_text) {
    if (n_out != n_embd_text) {
        fail(OM_STATUS_MODEL_MISMATCH, "%s projects %s to width %d but the text model is %d wide: the projector "
             "belongs to another model", path, what, n_out, n_embd_text);
    }
}

std::vector<bool> full_attention_blocks(const key_reader & keys, int32_t n_layer) {
    std::vector<int64_t> blocks = keys.integers("omnimem.qwen25_omni.vision_fullatt_block_indexes", false);
    if (blocks.empty()) {
        const int64_t n = keys.integer("clip.vision.n_wa_pattern", false, 0);
        if (n <= 0) {
            fail(OM_STATUS_MODEL_MISMATCH, "%s names no full-attention vision blocks (neither "
                 "omnimem.qwen25_omni.vision_fullatt_block_indexes nor clip.vision.n_wa_pattern); reconvert it with "
                 "`omnimem convert --mmproj`", keys.file.c_str());
        }
        for (int64_t i = n - 1; i < n_layer; i += n) {
            blocks.push_back(i);
        }
    }
    std::vector<bool> full(size_t(n_layer), false);
    for (const int64_t i : blocks) {
        if (i < 0 || i >= n_layer) {
            fail(OM_STATUS_MODEL_MISMATCH, "%s: full-attention vision block %lld does not exist (%d blocks)",
                 keys.file.c_str(), (long long) i, n_layer);
        }
        full[size_t(i)] = true;
    }
    return full;
}

std::unique_ptr<vision_tower> find_vision_tower(const weight_file & file, tensor_finder & tf, int32_t n_embd_text) {
    const key_reader keys = file.keys();
    const char * path = file.path().c_str();
    auto v = std::make_unique<vision_tower>();
    v->n_embd     = int32_t(keys.integer("clip.vision.embedding_length"));
    v->n_layer    = int32_t(keys.integer("clip.vision.block_count"));
    v->n_head     = int32_t(keys.integer("clip.vision.attention.head_count"));
    v->n_out      = int32_t(keys.integer("clip.vision.projection_dim"));
    v->patch_size = int32_t(keys.integer("clip.vision.patch_size"));
    v->eps        = keys.real("clip.vision.attention.layer_norm_epsilon", false, 1e-6f);
    // llama.cpp's converter writes neither; these are every released Qwen2.5-Omni's values
    v->merge = int32_t(keys.integer("clip.vision.spatial_merge_size", false, 2));
    const int64_t window_px = keys.integer("clip.vision.window_size", false, 112);
    const int64_t temporal = keys.integer("omnimem.qwen25_omni.vision_temporal_patch_size", false, 2);
    check_projection_width(path, "images", v->n_out, n_embd_text);
    if (v->n_embd <= 0 || v->n_head <= 0 || v->n_layer <= 0 || v->n_embd % v->n_head != 0 ||
        (v->n_embd / v->n_head) % 4 != 0) {
        fail(OM_STATUS_MODEL_MISMATCH, "%s: vision width %d with %d heads and %d blocks gives no head size divisible "
             "by 4, which the 2-D rotary embedding needs", path, v->n_embd, v->n_head, v->n_layer);
    }
    if (temporal != 2 || 3 * 2 * int64_t(v->patch_size) * v->patch_size != OM_IMAGE_PATCH_DIM) {
        fail(OM_STATUS_UNSUPPORTED, "%s: vision patches of %d px over %lld frames; this build's image preprocessing "
             "makes 14 px patches over 2 frames", path, v->patch_size, (long long) temporal);
    }
    const int64_t cell_px = int64_t(v->merge) * v->patch_size;
    if (v->merge <= 0 || window_px <= 0 || window_px % cell_px != 0) {
        fail(OM_STATUS_MODEL_MISMATCH, "%s: the vision window of %lld px is not a multiple of the %d x %d patch merge "
             "(%lld px)", path, (long long) window_px, v->merge, v->merge, (long long) cell_px);
    }
    v->window_cells = int32_t(window_px / cell_px);
    ggml_tensor * up0 = ggml_get_tensor(file.tensors(), "v.blk.0.ffn_up.weight");
    v->n_ff = up0 != nullptr ? int32_t(up0->ne[1]) : 0;   // clip.vision.feed_forward_length is unreliable

    const int64_t d = v->n_embd, ff = v->n_ff, p = v->patch_size, merged = d * v->merge * v->merge;
    v->patch_embd[0] = tf.get("v.patch_embd.weight", {p, p, 3, d});
    v->patch_embd[1] = tf.get("v.patch_embd.weight.1", {p, p, 3, d});
    const std::vector<bool> full = full_attention_blocks(keys, v->n_layer);
    v->layers.resize(size_t(v->n_layer));
    for (int32_t il = 0; il < v->n_layer; ++il) {
        const std::string b = "v.blk." + std::to_string(il) + ".";
        vision_layer & l = v->layers[size_t(il)];
        l.ln1_w      = tf.get(b + "ln1.weight", {d});
        l.wq         = tf.get(b + "attn_q.weight", {d, d});
        l.bq         = tf.get(b + "attn_q.bias", {d});
        l.wk         = tf.get(b + "attn_k.weight", {d, d});
        l.bk         = tf.get(b + "attn_k.bias", {d});
        l.wv         = tf.get(b + "attn_v.weight", {d, d});
        l.bv         = tf.get(b + "attn_v.bias", {d});
        l.wo         = tf.get(b + "attn_out.weight", {d, d});
        l.bo         = tf.get(b + "attn_out.bias", {d});
        l.ln2_w      = tf.get(b + "ln2.weight", {d});
        l.ffn_up_w   = tf.get(b + "ffn_up.weight", {d, ff});
        l.ffn_up_b   = tf.get(b + "ffn_up.bias", {ff});
        l.ffn_gate_w = tf.get(b + "ffn_gate.weight", {d, ff});
        l.ffn_gate_b = tf.get(b + "ffn_gate.bias", {ff});
        l.ffn_down_w = tf.get(b + "ffn_down.weight", {ff, d});
        l.ffn_down_b = tf.get(b + "ffn_down.bias", {d});
        l.full_attention = full[size_t(il)];
    }
    v->post_ln_w = tf.get("v.post_ln.weight", {d});
    v->mm0_w     = tf.get("mm.0.weight", {merged, merged});
    v->mm0_b     = tf.get("mm.0.bias", {merged});
    v->mm2_w     = tf.get("mm.2.weight", {merged, v->n_out});
    v->mm2_b     = tf.get("mm.2.bias", {v->n_out});
    return v;
}

std::unique_ptr<audio_tower> find_audio_tower(const weight_file & file, tensor_finder & tf, int32_t n_embd_text) {
    const key_reader keys = file.keys();
    auto a = std::make_unique<audio_tower>();
    a->n_mel   = int32_t(keys.integer("clip.audio.num_mel_bins"));
    a->n_embd  = int32_t(keys.integer("clip.audio.embedding_length"));
    a->n_layer = int32_t(keys.integer("clip.audio.block_count"));
    a->n_head  = int32_t(keys.integer("clip.audio.attention.head_count"));
    a->n_ff    = int32_t(keys.integer("clip.audio.feed_forward_length"));
    a->n_out   = int32_t(keys.integer("clip.audio.projection_dim"));
    a->eps     = keys.real("clip.audio.attention.layer_norm_epsilon", false, 1e-5f);
    // files written by llama.cpp's converter lack the window; 100 is Qwen2.5-Omni's released value
    a->n_window = int32_t(keys.integer("omnimem.qwen25_omni.audio_n_window", false, 100));
    const char * path = file.path().c_str();
    check_projection_width(path, "audio", a->n_out, n_embd_text);
    if (a->n_embd <= 0 || a->n_head <= 0 || a->n_embd % a->n_head != 0 || a->n_window <= 0) {
        fail(OM_STATUS_MODEL_MISMATCH, "%s: audio width %d must be a positive multiple of its head count %d", path,
             a->n_embd, a->n_head);
    }
    const int64_t d = a->n_embd, ff = a->n_ff;
    a->conv1_w = tf.get("a.conv1d.1.weight", {3, a->n_mel, d});
    a->conv1_b = tf.get("a.conv1d.1.bias", {1, d});   // llama.cpp stores conv biases as [1, d]
    a->conv2_w = tf.get("a.conv1d.2.weight", {3, d, d});
    a->conv2_b = tf.get("a.conv1d.2.bias", {1, d});
    ggml_tensor * pos = ggml_get_tensor(file.tensors(), "a.position_embd.weight");
    a->n_positions = pos != nullptr ? int32_t(pos->ne[1]) : 0;
    a->pos_embd  = tf.get("a.position_embd.weight", {d, a->n_positions});
    if (a->n_positions < a->n_window) {
        fail(OM_STATUS_MODEL_MISMATCH, "%s: the audio position table has %d rows, fewer than a chunk needs (%d)", path,
             a->n_positions, a->n_window);
    }
    a->post_ln_w = tf.get("a.post_ln.weight", {d});
    a->post_ln_b = tf.get("a.post_ln.bias", {d});
    a->proj_w    = tf.get("mm.a.fc.weight", {d, a->n_out});
    a->proj_b    = tf.get("mm.a.fc.bias", {a->n_out});
    a->layers.resize(size_t(a->n_layer));
    for (int32_t il = 0; il < a->n_layer; ++il) {
        const std::string p = "a.blk." + std::to_string(il) + ".";
        audio_layer & l = a->layers[size_t(il)];
        l.ln1_w      = tf.get(p + "ln1.weight", {d});
        l.ln1_b      = tf.get(p + "ln1.bias", {d});
        l.wq         = tf.get(p + "attn_q.weight", {d, d});
        l.bq         = tf.get(p + "attn_q.bias", {d});
        l.wk         = tf.get(p + "attn_k.weight", {d, d});
        l.wv         = tf.get(p + "attn_v.weight", {d, d});
        l.bv         = tf.get(p + "attn_v.bias", {d});
        l.wo         = tf.get(p + "attn_out.weight", {d, d});
        l.bo         = tf.get(p + "attn_out.bias", {d});
        l.ln2_w      = tf.get(p + "ln2.weight", {d});
        l.ln2_b      = tf.get(p + "ln2.bias", {d});
        l.ffn_up_w   = tf.get(p + "ffn_up.weight", {d, ff});
        l.ffn_up_b   = tf.get(p + "ffn_up.bias", {ff});
        l.ffn_down_w = tf.get(p + "ffn_down.weight", {ff, d});
        l.ffn_down_b = tf.get(p + "ffn_down.bias", {d});
    }
    return a;
}

bool has_encoder(const weight_file & file, const char * key) {
    const int64_t id = gguf_find_key(file.gguf(), key);
    if (id < 0) {
        return false;
    }
    if (gguf_get_kv_type(file.gguf(), id) != GGUF_TYPE_BOOL) {
        fail(OM_STATUS_MODEL_MISMATCH, "%s: key '%s' should hold a boolean", file.path().c_str(), key);
    }
    return gguf_get_val_bool(file.gguf(), id);
}

} // namespace

std::unique_ptr<projector> load_projector(const std::string & path, int32_t n_embd_text, ggml_backend_dev_t device,
                                          bool use_mmap) {
    auto p = std::make_unique<projector>();
    p->file = std::make_unique<weight_file>(path);
    const key_reader keys = p->file->keys();
    const std::string arch = keys.string("general.architecture");
    if (arch != "clip") {
        fail(OM_STATUS_UNSUPPORTED, "%s has architecture '%s', not a multimodal projector ('clip'); pass the file "
             "written by `omnimem convert --mmproj`", path.c_str(), arch.c_str());
    }
    const std::string type = keys.string("clip.projector_type", false);
    if (type != "qwen2.5o") {
        fail(OM_STATUS_UNSUPPORTED, "%s is a '%s' projector; this build runs Qwen2.5-Omni's ('qwen2.5o')", path.c_str(),
             type.c_str());
    }
    tensor_finder tf = p->file->finder();
    if (has_encoder(*p->file, "clip.has_vision_encoder")) {
        p->vision = find_vision_tower(*p->file, tf, n_embd_text);
    }
    if (has_encoder(*p->file, "clip.has_audio_encoder")) {
        p->audio = find_audio_tower(*p->file, tf, n_embd_text);
    }
    p->file->place(tf.used, device, use_mmap, std::function<bool(const ggml_tensor *)>());
    return p;
}

} // namespace om
