#include "model/projector.h"

#include <functional>

namespace om {

namespace {

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
    if (a->n_out != n_embd_text) {
        fail(OM_STATUS_MODEL_MISMATCH, "%s projects audio to width %d but the text model is %d wide: the projector "
             "belongs to another model", path, a->n_out, n_embd_text);
    }
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
    const int64_t has_audio = gguf_find_key(p->file->gguf(), "clip.has_audio_encoder");
    if (has_audio >= 0 && gguf_get_val_bool(p->file->gguf(), has_audio)) {
        p->audio = find_audio_tower(*p->file, tf, n_embd_text);
    }
    p->file->place(tf.used, device, use_mmap, std::function<bool(const ggml_tensor *)>());
    return p;
}

} // namespace om
