#include "model/model.h"

#include "ggml-alloc.h"
#include "llama.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <thread>

namespace om {

static const char * const ARCH_QWEN2VL = "qwen2vl";

mapped_file::mapped_file(const std::string & path) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) {
        fail(OM_STATUS_FILE_NOT_FOUND, "cannot open %s: %s", path.c_str(), std::strerror(errno));
    }
    struct stat st {};
    ::fstat(fd, &st);
    size_ = size_t(st.st_size);
    void * p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) {
        fail(OM_STATUS_BACKEND_ERROR, "cannot map %s into memory: %s (try use_mmap=False)", path.c_str(),
             std::strerror(errno));
    }
    data_ = static_cast<uint8_t *>(p);
}

mapped_file::~mapped_file() {
    if (data_ != nullptr) {
        ::munmap(data_, size_);
    }
}

// --- reading keys -------------------------------------------------------------------------------------

namespace {

struct key_reader {
    const gguf_context * gguf;
    std::string file;

    int64_t find(const std::string & key, bool required) const {
        const int64_t id = gguf_find_key(gguf, key.c_str());
        if (id < 0 && required) {
            fail(OM_STATUS_MODEL_MISMATCH, "%s lacks the required key '%s'; reconvert it with `omnimem convert`",
                 file.c_str(), key.c_str());
        }
        return id;
    }

    int64_t integer(const std::string & key, bool required = true, int64_t fallback = 0) const {
        const int64_t id = find(key, required);
        if (id < 0) {
            return fallback;
        }
        switch (gguf_get_kv_type(gguf, id)) {
            case GGUF_TYPE_UINT8:  return gguf_get_val_u8(gguf, id);
            case GGUF_TYPE_INT8:   return gguf_get_val_i8(gguf, id);
            case GGUF_TYPE_UINT16: return gguf_get_val_u16(gguf, id);
            case GGUF_TYPE_INT16:  return gguf_get_val_i16(gguf, id);
            case GGUF_TYPE_UINT32: return gguf_get_val_u32(gguf, id);
            case GGUF_TYPE_INT32:  return gguf_get_val_i32(gguf, id);
            case GGUF_TYPE_UINT64: return int64_t(gguf_get_val_u64(gguf, id));
            case GGUF_TYPE_INT64:  return gguf_get_val_i64(gguf, id);
            default:
                fail(OM_STATUS_MODEL_MISMATCH, "%s: key '%s' should hold an integer", file.c_str(), key.c_str());
        }
    }

    float real(const std::string & key, bool required = true, float fallback = 0.0f) const {
        const int64_t id = find(key, required);
        if (id < 0) {
            return fallback;
        }
        switch (gguf_get_kv_type(gguf, id)) {
            case GGUF_TYPE_FLOAT32: return gguf_get_val_f32(gguf, id);
            case GGUF_TYPE_FLOAT64: return float(gguf_get_val_f64(gguf, id));
            default:
                fail(OM_STATUS_MODEL_MISMATCH, "%s: key '%s' should hold a float", file.c_str(), key.c_str());
        }
    }

    std::string string(const std::string & key, bool required = true) const {
        const int64_t id = find(key, required);
        if (id < 0) {
            return "";
        }
        if (gguf_get_kv_type(gguf, id) != GGUF_TYPE_STRING) {
            fail(OM_STATUS_MODEL_MISMATCH, "%s: key '%s' should hold a string", file.c_str(), key.c_str());
        }
        return gguf_get_val_str(gguf, id);
    }

    std::vector<int64_t> integers(const std::string & key, bool required = true) const {
        const int64_t id = find(key, required);
        std::vector<int64_t> out;
        if (id < 0) {
            return out;
        }
        const bool is_int_array = gguf_get_kv_type(gguf, id) == GGUF_TYPE_ARRAY &&
                                  (gguf_get_arr_type(gguf, id) == GGUF_TYPE_INT32 ||
                                   gguf_get_arr_type(gguf, id) == GGUF_TYPE_UINT32);
        if (!is_int_array) {
            fail(OM_STATUS_MODEL_MISMATCH, "%s: key '%s' should hold an array of 32-bit integers", file.c_str(),
                 key.c_str());
        }
        const auto * data = static_cast<const int32_t *>(gguf_get_arr_data(gguf, id));
        out.assign(data, data + gguf_get_arr_n(gguf, id));
        return out;
    }
};

std::string shape_string(const int64_t * ne, int n) {
    std::string s = "[";
    for (int i = 0; i < n; ++i) {
        s += (i ? ", " : "") + std::to_string(ne[i]);
    }
    return s + "]";
}

// Looks a weight up by name and checks its shape (ggml order: ne0 first).
struct tensor_finder {
    ggml_context * ctx;
    std::string file;
    std::vector<ggml_tensor *> used;

    ggml_tensor * get(const std::string & name, std::initializer_list<int64_t> shape, bool required = true) {
        ggml_tensor * t = ggml_get_tensor(ctx, name.c_str());
        if (t == nullptr) {
            if (required) {
                fail(OM_STATUS_MODEL_MISMATCH, "%s has no tensor '%s'; the file is incomplete or not a Qwen2.5-Omni "
                     "text model", file.c_str(), name.c_str());
            }
            return nullptr;
        }
        const std::vector<int64_t> want(shape);
        bool ok = ggml_n_dims(t) <= int(want.size());
        for (int i = 0; i < GGML_MAX_DIMS; ++i) {
            const int64_t expected = i < int(want.size()) ? want[size_t(i)] : 1;
            ok = ok && t->ne[i] == expected;
        }
        if (!ok) {
            fail(OM_STATUS_MODEL_MISMATCH, "%s: tensor '%s' has shape %s but the hyperparameters require %s",
                 file.c_str(), name.c_str(), shape_string(t->ne, ggml_n_dims(t)).c_str(),
                 shape_string(want.data(), int(want.size())).c_str());
        }
        used.push_back(t);
        return t;
    }
};

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
    ggml_tensor * embd = ggml_get_tensor(m.ctx_weights, "token_embd.weight");
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

// The CPU backend's repacked weight layouts (CPU_REPACK) speed up quantized matmuls. ggml's AMX layout is
// deliberately not used: with the pinned build it faults on batched matmuls (see docs/architecture.md).
ggml_backend_buffer_type_t cpu_repack_buft(ggml_backend_dev_t cpu) {
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(cpu);
    auto get_extra = reinterpret_cast<ggml_backend_dev_get_extra_bufts_t>(
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts"));
    if (get_extra == nullptr) {
        return nullptr;
    }
    for (ggml_backend_buffer_type_t * b = get_extra(cpu); b != nullptr && *b != nullptr; ++b) {
        if (std::strcmp(ggml_backend_buft_name(*b), "CPU_REPACK") == 0) {
            return *b;
        }
    }
    return nullptr;
}

// Whether `buft` can hold `w` for a matmul on `dev` (asked the way ggml expects: a probe op over a
// zero-sized buffer of that type).
bool matmul_weight_fits(ggml_backend_dev_t dev, ggml_backend_buffer_type_t buft, ggml_tensor * w) {
    ggml_init_params ip = {ggml_tensor_overhead() * 4, nullptr, true};
    ggml_context * ctx = ggml_init(ip);
    ggml_tensor * x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, w->ne[0], 32);
    ggml_tensor * op = ggml_mul_mat(ctx, w, x);
    ggml_backend_buffer_t probe = ggml_backend_buft_alloc_buffer(buft, 0);
    ggml_backend_buffer_t saved = w->buffer;
    w->buffer = probe;
    const bool ok = ggml_backend_dev_supports_op(dev, op);
    w->buffer = saved;
    ggml_backend_buffer_free(probe);
    ggml_free(ctx);
    return ok;
}

bool is_matmul_weight(const om_model & m, const ggml_tensor * t) {
    if (t == m.output) {
        return true;
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

void place_weights(om_model & m, const std::vector<ggml_tensor *> & used) {
    const size_t data_offset = gguf_get_data_offset(m.gguf);
    const bool on_cpu = ggml_backend_dev_type(m.device) == GGML_BACKEND_DEVICE_TYPE_CPU;
    if (m.params.use_mmap) {
        m.mapping = new mapped_file(m.path);
    }

    // Decide a buffer type per tensor; nullptr = used in place inside the mapping (CPU only).
    ggml_backend_buffer_type_t repack = on_cpu && m.params.use_repack ? cpu_repack_buft(m.device) : nullptr;
    std::map<ggml_backend_buffer_type_t, std::vector<ggml_tensor *>> by_buft;
    std::vector<ggml_tensor *> in_place;
    for (ggml_tensor * t : used) {
        if (std::find(in_place.begin(), in_place.end(), t) != in_place.end()) {
            continue;
        }
        ggml_backend_buffer_type_t buft = nullptr;
        if (repack != nullptr && ggml_is_quantized(t->type) && is_matmul_weight(m, t) &&
            matmul_weight_fits(m.device, repack, t)) {
            buft = repack;
        } else if (!on_cpu || m.mapping == nullptr) {
            buft = ggml_backend_dev_buffer_type(m.device);
        }
        if (buft == nullptr) {
            in_place.push_back(t);
        } else {
            by_buft[buft].push_back(t);
        }
        m.weights_bytes += ggml_nbytes(t);
        m.n_params += ggml_nelements(t);
    }

    if (!in_place.empty()) {
        ggml_backend_buffer_t buf = ggml_backend_cpu_buffer_from_ptr(m.mapping->data(), m.mapping->size());
        if (buf == nullptr) {
            fail(OM_STATUS_BACKEND_ERROR, "cannot wrap the mapping of %s as a ggml buffer", m.path.c_str());
        }
        ggml_backend_buffer_set_usage(buf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
        m.buffers.push_back(buf);
        for (ggml_tensor * t : in_place) {
            const int64_t id = gguf_find_tensor(m.gguf, ggml_get_name(t));
            void * addr = m.mapping->data() + data_offset + gguf_get_tensor_offset(m.gguf, id);
            if (ggml_backend_tensor_alloc(buf, t, addr) != GGML_STATUS_SUCCESS) {
                fail(OM_STATUS_BACKEND_ERROR, "cannot place tensor '%s' in the mapped file", ggml_get_name(t));
            }
        }
    }

    FILE * file = m.mapping == nullptr ? std::fopen(m.path.c_str(), "rb") : nullptr;
    std::vector<uint8_t> staging;
    for (auto & [buft, tensors] : by_buft) {
        const size_t align = ggml_backend_buft_get_alignment(buft);
        size_t total = align;
        for (ggml_tensor * t : tensors) {
            total += GGML_PAD(ggml_backend_buft_get_alloc_size(buft, t), align);
        }
        ggml_backend_buffer_t buf = ggml_backend_buft_alloc_buffer(buft, total);
        if (buf == nullptr) {
            fail(OM_STATUS_BACKEND_ERROR, "cannot allocate %.1f MiB of %s memory for the weights of %s",
                 double(total) / (1 << 20), ggml_backend_buft_name(buft), m.path.c_str());
        }
        ggml_backend_buffer_set_usage(buf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
        m.buffers.push_back(buf);
        ggml_tallocr alloc = ggml_tallocr_new(buf);
        for (ggml_tensor * t : tensors) {
            if (ggml_tallocr_alloc(&alloc, t) != GGML_STATUS_SUCCESS) {
                fail(OM_STATUS_BACKEND_ERROR, "cannot place tensor '%s' in %s memory", ggml_get_name(t),
                     ggml_backend_buft_name(buft));
            }
            const size_t offset = data_offset + gguf_get_tensor_offset(m.gguf, gguf_find_tensor(m.gguf, ggml_get_name(t)));
            const size_t n = ggml_nbytes(t);
            const void * src = nullptr;
            if (m.mapping != nullptr) {
                src = m.mapping->data() + offset;
            } else {
                staging.resize(n);
                if (file == nullptr || std::fseek(file, long(offset), SEEK_SET) != 0 ||
                    std::fread(staging.data(), 1, n, file) != n) {
                    if (file != nullptr) {
                        std::fclose(file);
                    }
                    fail(OM_STATUS_BAD_FILE, "cannot read tensor '%s' from %s", ggml_get_name(t), m.path.c_str());
                }
                src = staging.data();
            }
            ggml_backend_tensor_set(t, src, 0, n);
        }
    }
    if (file != nullptr) {
        std::fclose(file);
    }
}

void check_file(const std::string & path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        fail(OM_STATUS_FILE_NOT_FOUND, "no such file: %s", path.c_str());
    }
    if (S_ISDIR(st.st_mode)) {
        fail(OM_STATUS_FILE_NOT_FOUND, "%s is a directory; pass the path of a .gguf file (convert a checkpoint "
             "directory with `omnimem convert`)", path.c_str());
    }
    char magic[4] = {0, 0, 0, 0};
    FILE * f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
        fail(OM_STATUS_FILE_NOT_FOUND, "cannot open %s: %s", path.c_str(), std::strerror(errno));
    }
    const size_t n = std::fread(magic, 1, 4, f);
    std::fclose(f);
    if (n < 4 || std::memcmp(magic, "GGUF", 4) != 0) {
        fail(OM_STATUS_BAD_FILE, "%s is not a GGUF file (no GGUF magic at its start); convert a Hugging Face "
             "checkpoint with `omnimem convert`", path.c_str());
    }
}

// Every tensor's data must lie inside the file: gguf_init without data does not check it.
void check_tensor_extents(const om_model & m) {
    struct stat st {};
    ::stat(m.path.c_str(), &st);
    const uint64_t file_size = uint64_t(st.st_size);
    const uint64_t data_offset = gguf_get_data_offset(m.gguf);
    for (int64_t i = 0; i < gguf_get_n_tensors(m.gguf); ++i) {
        const char * name = gguf_get_tensor_name(m.gguf, i);
        const ggml_tensor * t = ggml_get_tensor(m.ctx_weights, name);
        const uint64_t end = data_offset + gguf_get_tensor_offset(m.gguf, i) + ggml_nbytes(t);
        if (end > file_size) {
            fail(OM_STATUS_BAD_FILE, "%s is truncated: tensor '%s' ends at byte %llu but the file has %llu bytes; "
                 "download or convert it again", m.path.c_str(), name, (unsigned long long) end,
                 (unsigned long long) file_size);
        }
    }
}

void load_vocab(om_model & m) {
    if (gguf_find_key(m.gguf, "tokenizer.ggml.model") < 0) {
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

} // namespace

om_model * load_model(const char * path, const om_model_params & params) {
    init_logging();
    if (path == nullptr) {
        fail(OM_STATUS_INVALID_ARGUMENT, "model path is NULL");
    }
    check_file(path);

    auto * m = new om_model();
    try {
        m->path = path;
        m->params = params;
        clear_backend_log();
        gguf_init_params gp = {/*no_alloc=*/true, &m->ctx_weights};
        m->gguf = gguf_init_from_file(path, gp);
        if (m->gguf == nullptr) {
            std::string why = backend_log();
            while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) {
                why.pop_back();
            }
            fail(OM_STATUS_BAD_FILE, "%s is a corrupt or truncated GGUF file (%s)", path,
                 why.empty() ? "unreadable header" : why.c_str());
        }
        check_tensor_extents(*m);

        key_reader keys{m->gguf, path};
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

        tensor_finder finder{m->ctx_weights, path, {}};
        find_weights(*m, finder);

        m->cpu_device = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
        m->device = select_device(params.device);
        m->n_threads = params.n_threads > 0 ? params.n_threads : int32_t(std::max(1u, std::thread::hardware_concurrency()));
        place_weights(*m, finder.used);
        load_vocab(*m);
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
    for (ggml_backend_buffer_t b : buffers) {
        ggml_backend_buffer_free(b);
    }
    delete mapping;
    if (gguf != nullptr) {
        gguf_free(gguf);
    }
    if (ctx_weights != nullptr) {
        ggml_free(ctx_weights);
    }
}
