// The C API of omnimem.h: argument checks and the translation of exceptions into status codes.
// No C++ exception leaves this file.
#include "api-guard.h"
#include "common.h"
#include "kernels/packed-matmul.h"
#include "model/model.h"
#include "stream/sampler.h"
#include "stream/stream.h"

#include "ggml-backend.h"
#include "llama.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <string>


namespace {

using om::guarded;
using om::require;

const llama_vocab & vocab_of(const om_model * model) {
    if (model->vocab == nullptr) {
        om::fail(OM_STATUS_NO_TOKENIZER, "%s has no tokenizer (it was converted without tokenizer files); feed token "
                 "ids instead, or reconvert with tokenizer.json next to the checkpoint", model->path.c_str());
    }
    return *model->vocab;
}

void copy_string(char * dst, size_t cap, const std::string & src) {
    const size_t n = std::min(cap - 1, src.size());
    std::memcpy(dst, src.data(), n);
    dst[n] = '\0';
}

} // namespace

extern "C" {

const char * om_last_error(void) { return om::last_error(); }

const char * om_status_name(om_status status) {
    switch (status) {
        case OM_STATUS_OK:               return "ok";
        case OM_STATUS_INVALID_ARGUMENT: return "invalid_argument";
        case OM_STATUS_FILE_NOT_FOUND:   return "file_not_found";
        case OM_STATUS_BAD_FILE:         return "bad_file";
        case OM_STATUS_UNSUPPORTED:      return "unsupported";
        case OM_STATUS_MODEL_MISMATCH:   return "model_mismatch";
        case OM_STATUS_CONTEXT_FULL:     return "context_full";
        case OM_STATUS_NO_TOKENIZER:     return "no_tokenizer";
        case OM_STATUS_BUFFER_TOO_SMALL: return "buffer_too_small";
        case OM_STATUS_BACKEND_ERROR:    return "backend_error";
        case OM_STATUS_INTERNAL:         return "internal";
    }
    return "unknown";
}

const char * om_version(void) { return OMNIMEM_VERSION; }

const char * om_system_info(void) {
    static std::string info;
    om::init_logging();
    info = std::string("omnimem ") + OMNIMEM_VERSION + "; devices:";
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
        ggml_backend_dev_t d = ggml_backend_dev_get(i);
        info += std::string(" ") + ggml_backend_dev_name(d) + " (" + ggml_backend_dev_description(d) + ")";
    }
    info += om::packed_matmul_available() ? "; Q8_0/Q4_0/F16 products: packed, AMX tiles and AVX-512"
                                          : "; Q8_0/Q4_0/F16 products: ggml's";
    info += "; llama.cpp: ";
    info += llama_print_system_info();
    return info.c_str();
}

void om_model_default_params(om_model_params * p) {
    p->mmproj_path = nullptr;
    p->device     = "auto";
    p->n_threads  = 0;
    p->use_mmap   = true;
    p->use_repack = true;
    p->n_encoder_cache = 0;
}

om_status om_model_load(const char * path, const om_model_params * params, om_model ** out_model) {
    if (out_model != nullptr) {
        *out_model = nullptr;
    }
    return guarded([&] {
        require(out_model != nullptr, "out_model is NULL");
        om_model_params p;
        om_model_default_params(&p);
        *out_model = om::load_model(path, params != nullptr ? *params : p);
    });
}

void om_model_free(om_model * model) { delete model; }

om_status om_model_get_info(const om_model * m, om_model_info * out) {
    return guarded([&] {
        require(m != nullptr && out != nullptr, "model and out_info must not be NULL");
        std::memset(out, 0, sizeof(*out));
        const om::text_hparams & hp = m->hparams;
        copy_string(out->architecture, sizeof(out->architecture), m->architecture);
        copy_string(out->name, sizeof(out->name), m->name);
        copy_string(out->device, sizeof(out->device), ggml_backend_dev_name(m->device));
        out->n_vocab = hp.n_vocab;
        out->n_embd = hp.n_embd;
        out->n_layer = hp.n_layer;
        out->n_head = hp.n_head;
        out->n_head_kv = hp.n_head_kv;
        out->n_embd_head = hp.n_embd_head;
        out->n_ff = hp.n_ff;
        out->n_ctx_train = hp.n_ctx_train;
        std::copy(std::begin(hp.rope_sections), std::end(hp.rope_sections), out->rope_sections);
        out->rope_freq_base = hp.rope_freq_base;
        out->rms_norm_eps = hp.rms_norm_eps;
        out->n_params = m->file->params_placed();
        out->weights_bytes = m->file->bytes_placed();
        out->weights_packed_bytes = m->file->bytes_packed();
        out->n_threads = m->n_threads;
        out->has_tokenizer = m->vocab != nullptr;
        out->tied_embeddings = m->output == m->tok_embd;
        const om::audio_tower * audio = m->projector != nullptr ? m->projector->audio.get() : nullptr;
        out->has_audio_encoder = audio != nullptr;
        out->audio_n_mel = audio != nullptr ? audio->n_mel : 0;
        out->has_vision_encoder = m->projector != nullptr && m->projector->vision != nullptr;
    });
}

int64_t om_model_encoder_cache_hits(const om_model * model) {
    return model != nullptr ? model->vision_cache->hits() + model->audio_cache->hits() : 0;
}

om_status om_tokenize(const om_model * model, const char * text, int32_t text_len, bool parse_special,
                      int32_t * tokens, int32_t n_tokens_max, int32_t * n_tokens_out) {
    return guarded([&] {
        require(model != nullptr && text != nullptr && n_tokens_out != nullptr && text_len >= 0 && n_tokens_max >= 0,
                "om_tokenize: NULL or negative argument");
        const llama_vocab & vocab = vocab_of(model);
        const int32_t n = llama_tokenize(&vocab, text, text_len, tokens, n_tokens_max, false, parse_special);
        if (n == INT32_MIN) {
            om::fail(OM_STATUS_INVALID_ARGUMENT, "the text is too long to tokenize");
        }
        *n_tokens_out = n < 0 ? -n : n;
        if (n < 0) {
            om::fail(OM_STATUS_BUFFER_TOO_SMALL, "the text needs %d tokens, the buffer holds %d", -n, n_tokens_max);
        }
    });
}

om_status om_token_to_piece(const om_model * model, int32_t token, bool special, char * buf, int32_t buf_size,
                            int32_t * n_bytes_out) {
    return guarded([&] {
        require(model != nullptr && n_bytes_out != nullptr && buf_size >= 0, "om_token_to_piece: NULL argument");
        const llama_vocab & vocab = vocab_of(model);
        if (token < 0 || token >= llama_vocab_n_tokens(&vocab)) {
            om::fail(OM_STATUS_INVALID_ARGUMENT, "token id %d is outside the vocabulary [0, %d)", token,
                     llama_vocab_n_tokens(&vocab));
        }
        const int32_t n = llama_token_to_piece(&vocab, token, buf, buf_size, 0, special);
        *n_bytes_out = n < 0 ? -n : n;
        if (n < 0) {
            om::fail(OM_STATUS_BUFFER_TOO_SMALL, "token %d needs %d bytes, the buffer holds %d", token, -n, buf_size);
        }
    });
}

bool om_token_is_eog(const om_model * model, int32_t token) {
    return model != nullptr && model->vocab != nullptr && token >= 0 &&
           token < llama_vocab_n_tokens(model->vocab) && llama_vocab_is_eog(model->vocab, token);
}

void om_stream_default_params(om_stream_params * p) {
    p->n_ctx   = 4096;
    p->n_batch = 512;
    p->kv_type = OM_KV_TYPE_F16;
    p->memory = om_memory_params{};
    p->memory.policy = OM_POLICY_FULL;
    p->memory.lam = 0.02f;
    p->memory.n_sink = 4;
    p->memory.redundancy = OM_REDUNDANCY_VALUE;
    p->memory.n_score_queries = 32;
}

om_status om_stream_init(om_model * model, const om_stream_params * params, om_stream ** out_stream) {
    if (out_stream != nullptr) {
        *out_stream = nullptr;
    }
    return guarded([&] {
        require(model != nullptr && out_stream != nullptr, "model and out_stream must not be NULL");
        om_stream_params p;
        om_stream_default_params(&p);
        *out_stream = new om_stream(*model, params != nullptr ? *params : p);
    });
}

void om_stream_free(om_stream * stream) { delete stream; }

om_status om_stream_feed_tokens(om_stream * stream, const int32_t * tokens, int32_t n_tokens) {
    return guarded([&] {
        require(stream != nullptr, "stream is NULL");
        stream->feed_tokens(tokens, n_tokens);
    });
}

om_status om_stream_feed_embeddings(om_stream * stream, const float * embeddings, const int32_t * positions,
                                    const int8_t * modality, int32_t n) {
    return guarded([&] {
        require(stream != nullptr, "stream is NULL");
        if (modality != nullptr) {
            for (int32_t i = 0; i < n; ++i) {
                if (modality[i] < OM_MODALITY_TEXT || modality[i] > OM_MODALITY_AUDIO) {
                    om::fail(OM_STATUS_INVALID_ARGUMENT, "modality %d of input %d is not an om_modality", modality[i], i);
                }
            }
        }
        stream->feed_embeddings(embeddings, positions, reinterpret_cast<const om::modality *>(modality), n);
    });
}

om_status om_stream_encode_audio(om_stream * stream, const float * mel, int32_t n_mel, int32_t n_frames,
                                 float * out, int64_t out_capacity, int32_t * n_tokens_out) {
    return guarded([&] {
        require(stream != nullptr && mel != nullptr && n_tokens_out != nullptr && n_frames > 0,
                "om_stream_encode_audio: NULL argument or no frames");
        *n_tokens_out = stream->count_audio_tokens(n_mel, n_frames);
        if (int64_t(*n_tokens_out) * stream->model.hparams.n_embd > out_capacity || out == nullptr) {
            om::fail(OM_STATUS_BUFFER_TOO_SMALL, "%d audio tokens need %lld floats, the buffer holds %lld",
                     *n_tokens_out, (long long) *n_tokens_out * stream->model.hparams.n_embd, (long long) out_capacity);
        }
        stream->encode_audio(mel, n_frames, out);
    });
}

om_status om_stream_encode_image(om_stream * stream, const float * patches, int32_t n_patches,
                                 const int32_t grid_thw[3], float * out, int64_t out_capacity, int32_t * n_tokens_out) {
    return guarded([&] {
        require(stream != nullptr && patches != nullptr && grid_thw != nullptr && n_tokens_out != nullptr &&
                n_patches > 0, "om_stream_encode_image: NULL argument or no patches");
        *n_tokens_out = stream->count_image_tokens(n_patches, grid_thw);
        if (int64_t(*n_tokens_out) * stream->model.hparams.n_embd > out_capacity || out == nullptr) {
            om::fail(OM_STATUS_BUFFER_TOO_SMALL, "%d image tokens need %lld floats, the buffer holds %lld",
                     *n_tokens_out, (long long) *n_tokens_out * stream->model.hparams.n_embd, (long long) out_capacity);
        }
        stream->encode_image(patches, grid_thw, out);
    });
}

om_status om_stream_feed_media(om_stream * stream, const uint8_t * frames, int32_t n_frames, int32_t height,
                               int32_t width, float fps, const float * pcm, int64_t n_samples) {
    return guarded([&] {
        require(stream != nullptr, "stream is NULL");
        stream->feed_media(frames, n_frames, height, width, fps, pcm, n_samples);
    });
}

om_status om_stream_close_media(om_stream * stream) {
    return guarded([&] {
        require(stream != nullptr, "stream is NULL");
        stream->close_media();
    });
}

bool om_stream_media_open(const om_stream * stream) { return stream != nullptr && stream->media_open(); }

om_status om_stream_feed_image(om_stream * stream, const uint8_t * rgb, int32_t height, int32_t width) {
    return guarded([&] {
        require(stream != nullptr, "stream is NULL");
        stream->feed_image(rgb, height, width);
    });
}

om_status om_stream_get_logits(const om_stream * stream, float * out, int32_t n_vocab) {
    return guarded([&] {
        require(stream != nullptr && out != nullptr, "stream and out_logits must not be NULL");
        if (stream->logits.empty()) {
            om::fail(OM_STATUS_INVALID_ARGUMENT, "no logits yet: feed tokens first (a rollback also clears them)");
        }
        if (size_t(n_vocab) != stream->logits.size()) {
            om::fail(OM_STATUS_INVALID_ARGUMENT, "n_vocab is %d but the model has %zu", n_vocab, stream->logits.size());
        }
        std::memcpy(out, stream->logits.data(), sizeof(float) * stream->logits.size());
    });
}

int32_t om_stream_n_tokens(const om_stream * stream) { return stream != nullptr ? stream->n_tokens : 0; }

int32_t om_stream_next_pos(const om_stream * stream) { return stream != nullptr ? stream->next_pos : 0; }

om_status om_stream_rollback(om_stream * stream, int32_t n_tokens) {
    return guarded([&] {
        require(stream != nullptr, "stream is NULL");
        stream->rollback(n_tokens);
    });
}

om_status om_stream_profile(om_stream * stream, bool on) {
    return guarded([&] {
        require(stream != nullptr, "stream is NULL");
        stream->set_profile(on);
    });
}

om_status om_stream_get_profile(const om_stream * stream, om_op_time * out, int32_t capacity, int32_t * n_out) {
    return guarded([&] {
        require(stream != nullptr && n_out != nullptr, "stream and n_out must not be NULL");
        const std::vector<om_op_time> totals = stream->profile_totals();
        *n_out = int32_t(totals.size());
        if (capacity < *n_out || (out == nullptr && *n_out > 0)) {
            om::fail(OM_STATUS_BUFFER_TOO_SMALL, "the profile has %d operations; the buffer holds %d", *n_out, capacity);
        }
        std::copy(totals.begin(), totals.end(), out);
    });
}

void om_sampler_default_params(om_sampler_params * p) {
    p->temperature = 0.0f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->seed = 0;
}

om_status om_sampler_init(const om_sampler_params * params, om_sampler ** out_sampler) {
    if (out_sampler != nullptr) {
        *out_sampler = nullptr;
    }
    return guarded([&] {
        require(params != nullptr && out_sampler != nullptr, "params and out_sampler must not be NULL");
        *out_sampler = om::make_sampler(*params);
    });
}

void om_sampler_free(om_sampler * sampler) { om::free_sampler(sampler); }

om_status om_sampler_sample(om_sampler * sampler, const om_stream * stream, int32_t * out_token) {
    return guarded([&] {
        require(sampler != nullptr && stream != nullptr && out_token != nullptr, "NULL argument to om_sampler_sample");
        *out_token = om::sample(*sampler, *stream);
    });
}

} // extern "C"
