#include "model/model.h"

#include "llama.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <thread>

namespace om {

static const char * const ARCH_QWEN2VL = "qwen2vl";

// --- reading keys -------------------------------------------------------------------------------------

namespace {

void read_hparams(om_model & m, const key_reader & keys) {
    const std::string a = m.architecture + ".";
    text_hparams & hp = m.hparams;
    hp.n_embd      = int32_t(keys.integer(a + "embedding_length"));
    hp.n_layer     = int32_t(keys.integer(a + "block_count"));
    hp.n_head      = int32_t(keys.integer(a + "attention.head_count"));
    hp.n_head_kv   = int32_t(keys.integer(a + "attention.head_count_kv", false, hp.n_head));
    hp.n_ff        = int32_t(keys.integer(a + "feed_forward_length"));
    hp.n_ctx_train = int32_t(keys.integer(a + "context_length", false, 32768));
    hp.rope_freq_base = keys.real(a + "rope.freq_base", false, 10000.0f);
    hp.rms_norm_eps   = keys.real(a + "attention.layer_norm_rms_epsilon");

    const char * file = m.path.c_str();
    if (hp.n_embd <= 0 || hp.n_layer <= 0 || hp.n_head <= 0 || hp.n_head_kv <= 0 || hp.n_ff <= 0) {
        fail(OM_STATUS_MODEL_MISMATCH, "%s: hyperparameters must be positive (embedding_length=%d, block_count=%d, "
             "head_count=%d, head_count_kv=%d, feed_forward_length=%d)", file, hp.n_embd, hp.n_layer, hp.n_head,
             hp.n_head_kv, hp.n_ff);
    }
    if (hp.n_embd % hp.n_head != 0 || hp.n_head % hp.n_head_kv != 0) {
        fail(OM_STATUS_MODEL_MISMATCH, "%s: embedding_length %d must divide by head_count %d, and head_count by "
             "head_count_kv %d", file, hp.n_embd, hp.n_head, hp.n_head_kv);
    }
    hp.n_embd_head = int32_t(keys.integer(a + "attention.key_length", false, hp.n_embd / hp.n_head));

    const std::vector<int64_t> sections = keys.integers(a + "rope.dimension_sections");
    if (sections.size() != 4) {
        fail(OM_STATUS_MODEL_MISMATCH, "%s: rope.dimension_sections must have 4 entries, has %zu", file,
             sections.size());
    }
    int64_t pairs = 0;
    for (int i = 0; i < 4; ++i) {
        hp.rope_sections[i] = int32_t(sections[size_t(i)]);
        pairs += sections[size_t(i)];
    }
    if (pairs * 2 != hp.n_embd_head) {
        fail(OM_STATUS_MODEL_MISMATCH, "%s: rope.dimension_sections sum to %lld rotary pairs, but the head size %d "
             "needs %d", file, (long long) pairs, hp.n_embd_head, hp.n_embd_head / 2);
    }
}

void find_weights(om_model & m, tensor_finder & tf) {
    text_hparams & hp = m.hparams;
    ggml_tensor * embd = ggml_get_tensor(m.file->tensors(), "token_embd.weight");
    hp.n_vocab = embd != nullptr ? int32_t(embd->ne[1]) : 0;

    const int64_t d = hp.n_embd, dq = int64_t(hp.n_embd_head) * hp.n_head, dkv = hp.n_embd_kv(), ff = hp.n_ff;
    m.tok_embd    = tf.get("token_embd.weight", {d, hp.n_vocab});
    m.output_norm = tf.get("output_norm.weight", {d});
    m.output      = tf.get("output.weight", {d, hp.n_vocab}, /*required=*/false);
    if (m.output == nullptr) {
        m.output = m.tok_embd;
    }
    m.layers.resize(size_t(hp.n_layer));
    for (int il = 0; il < hp.n_layer; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        decoder_layer & l = m.layers[size_t(il)];
        l.attn_norm = tf.get(p + "attn_norm.weight", {d});
        l.wq        = tf.get(p + "attn_q.weight", {d, dq});
        l.bq        = tf.get(p + "attn_q.bias", {dq});
        l.wk        = tf.get(p + "attn_k.weight", {d, dkv});
        l.bk        = tf.get(p + "attn_k.bias", {dkv});
        l.wv        = tf.get(p + "attn_v.weight", {d, dkv});
        l.bv        = tf.get(p + "attn_v.bias", {dkv});
        l.wo        = tf.get(p + "attn_output.weight", {dq, d});
        l.ffn_norm  = tf.get(p + "ffn_norm.weight", {d});
        l.ffn_gate  = tf.get(p + "ffn_gate.weight", {d, ff});
        l.ffn_up    = tf.get(p + "ffn_up.weight", {d, ff});
        l.ffn_down  = tf.get(p + "ffn_down.weight", {ff, d});
    }
}

ggml_backend_dev_t select_device(const char * requested) {
    const std::string want = requested != nullptr ? requested : "auto";
    if (want == "auto") {
        ggml_backend_dev_t gpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_GPU);
        return gpu != nullptr ? gpu : ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    }
    if (want == "cpu" || want == "CPU") {
        return ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    }
    ggml_backend_dev_t dev = ggml_backend_dev_by_name(want.c_str());
    if (dev == nullptr) {
        std::string names;
        for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
            names += (i ? ", " : "") + std::string(ggml_backend_dev_name(ggml_backend_dev_get(i)));
        }
        fail(OM_STATUS_INVALID_ARGUMENT, "unknown device '%s'; this build has: auto, cpu, %s", want.c_str(),
             names.c_str());
    }
    return dev;
}

bool is_matmul_weight(const om_model & m, const ggml_tensor * t) {
    if (t == m.output) {
        return m.output != m.tok_embd;   // a tied head is also the embedding table, which lookups read
    }
    for (const decoder_layer & l : m.layers) {
        for (const ggml_tensor * w : {l.wq, l.wk, l.wv, l.wo, l.ffn_gate, l.ffn_up, l.ffn_down}) {
            if (w == t) {
                return true;
            }
        }
    }
    return false;
}

void load_vocab(om_model & m) {
    if (gguf_find_key(m.file->gguf(), "tokenizer.ggml.model") < 0) {
        return;  // token ids can still be fed; tokenize() reports OM_STATUS_NO_TOKENIZER
    }
    llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    clear_backend_log();
    m.vocab_model = llama_model_load_from_file(m.path.c_str(), mp);
    if (m.vocab_model == nullptr) {
        fail(OM_STATUS_BAD_FILE, "%s: its tokenizer could not be loaded: %s", m.path.c_str(), backend_log().c_str());
    }
    m.vocab = llama_model_get_vocab(m.vocab_model);
}

// The media framing tokens: from the converter's keys, else looked up in the vocabulary (files written by
// llama.cpp's converter carry no such keys).
void find_media_tokens(om_model & m) {
    const key_reader keys = m.file->keys();
    auto find = [&](const char * key, const char * text) -> int32_t {
        const int64_t id = keys.integer(std::string("omnimem.qwen25_omni.") + key, false, -1);
        if (id >= 0 || m.vocab == nullptr) {
            return int32_t(id);
        }
        llama_token tok = -1;
        const int32_t n = llama_tokenize(m.vocab, text, int32_t(std::strlen(text)), &tok, 1, false, true);
        return n == 1 ? tok : -1;
    };
    m.media_tokens.audio_bos  = find("audio_bos_token_id", "<|audio_bos|>");
    m.media_tokens.audio_eos  = find("audio_eos_token_id", "<|audio_eos|>");
    m.media_tokens.vision_bos = find("vision_bos_token_id", "<|vision_bos|>");
    m.media_tokens.vision_eos = find("vision_eos_token_id", "<|vision_eos|>");
}

} // namespace

om_model * load_model(const char * path, const om_model_params & params) {
    init_logging();
    if (path == nullptr) {
        fail(OM_STATUS_INVALID_ARGUMENT, "model path is NULL");
    }
    if (params.n_encoder_cache < 0) {
        fail(OM_STATUS_INVALID_ARGUMENT, "n_encoder_cache must be 0 (off) or more, got %d", params.n_encoder_cache);
    }

    auto * m = new om_model();
    try {
        m->path = path;
        m->params = params;
        m->file = std::make_unique<weight_file>(path);

        const key_reader keys = m->file->keys();
        m->architecture = keys.string("general.architecture");
        m->name = keys.string("general.name", false);
        if (m->architecture == "clip") {
            fail(OM_STATUS_UNSUPPORTED, "%s is a multimodal projector (mmproj) file, not a text model; pass the text "
                 "model GGUF as the model", path);
        }
        if (m->architecture != ARCH_QWEN2VL) {
            fail(OM_STATUS_UNSUPPORTED, "%s has architecture '%s'; this build runs '%s' (the Qwen2.5-Omni thinker's "
                 "text model, as written by `omnimem convert`)", path, m->architecture.c_str(), ARCH_QWEN2VL);
        }
        read_hparams(*m, keys);

        tensor_finder finder = m->file->finder();
        find_weights(*m, finder);

        m->cpu_device = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
        m->device = select_device(params.device);
        m->n_threads = params.n_threads > 0 ? params.n_threads : int32_t(std::max(1u, std::thread::hardware_concurrency()));
        m->file->place(finder.used, m->device, params.use_mmap,
                       params.use_repack ? [m](const ggml_tensor * t) { return is_matmul_weight(*m, t); }
                                         : std::function<bool(const ggml_tensor *)>());
        load_vocab(*m);
        find_media_tokens(*m);
        if (params.mmproj_path != nullptr) {
            m->projector = load_projector(params.mmproj_path, m->hparams.n_embd, m->device, params.use_mmap);
        }
        m->vision_cache = std::make_unique<encoder_cache>(params.n_encoder_cache);
        m->audio_cache = std::make_unique<encoder_cache>(params.n_encoder_cache);
        return m;
    } catch (...) {
        delete m;
        throw;
    }
}

ggml_backend_t init_backend(const om_model & model, ggml_backend_dev_t device) {
    ggml_backend_t backend = ggml_backend_dev_init(device, nullptr);
    if (backend == nullptr) {
        fail(OM_STATUS_BACKEND_ERROR, "cannot initialise the ggml device %s", ggml_backend_dev_name(device));
    }
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(device);
    auto set_threads = reinterpret_cast<ggml_backend_set_n_threads_t>(
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads"));
    if (set_threads != nullptr) {
        set_threads(backend, model.n_threads);
    }
    return backend;
}

} // namespace om

om_model::~om_model() {
    if (vocab_model != nullptr) {
        llama_model_free(vocab_model);
    }
}
