// om_model: a text-decoder GGUF loaded onto a ggml device — hyperparameters, weight tensors and the
// tokenizer. Read-only after om_model_load() but for the encoder caches, which lock; streams share it.
#pragma once

#include "common.h"
#include "model/encoder-cache.h"
#include "model/projector.h"
#include "model/weight-file.h"

#include "ggml-backend.h"
#include "ggml.h"
#include "gguf.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct llama_model;
struct llama_vocab;

namespace om {

struct text_hparams {
    int32_t n_vocab     = 0;
    int32_t n_embd      = 0;
    int32_t n_layer     = 0;
    int32_t n_head      = 0;
    int32_t n_head_kv   = 0;
    int32_t n_embd_head = 0;
    int32_t n_ff        = 0;
    int32_t n_ctx_train = 0;
    int32_t rope_sections[4] = {0, 0, 0, 0};
    float   rope_freq_base = 10000.0f;
    float   rms_norm_eps   = 1e-6f;

    int32_t n_embd_kv() const { return n_embd_head * n_head_kv; }
};

// Ids of the tokens that frame media in the model's prompts (-1: the vocabulary lacks it).
struct media_tokens {
    int32_t audio_bos  = -1;
    int32_t audio_eos  = -1;
    int32_t vision_bos = -1;
    int32_t vision_eos = -1;
};

struct decoder_layer {
    ggml_tensor * attn_norm = nullptr;  // [n_embd]
    ggml_tensor * wq = nullptr;         // [n_embd, n_embd_head*n_head]
    ggml_tensor * bq = nullptr;
    ggml_tensor * wk = nullptr;         // [n_embd, n_embd_kv]
    ggml_tensor * bk = nullptr;
    ggml_tensor * wv = nullptr;         // [n_embd, n_embd_kv]
    ggml_tensor * bv = nullptr;
    ggml_tensor * wo = nullptr;         // [n_embd_head*n_head, n_embd]
    ggml_tensor * ffn_norm = nullptr;   // [n_embd]
    ggml_tensor * ffn_gate = nullptr;   // [n_embd, n_ff]
    ggml_tensor * ffn_up   = nullptr;   // [n_embd, n_ff]
    ggml_tensor * ffn_down = nullptr;   // [n_ff, n_embd]
};

} // namespace om

struct om_model {
    std::string path;
    std::string architecture;
    std::string name;
    om::text_hparams hparams;
    om_model_params params;

    std::unique_ptr<om::weight_file> file;
    std::unique_ptr<om::projector> projector;   // encoders, when an mmproj file was given
    std::unique_ptr<om::encoder_cache> vision_cache;   // the towers' recent outputs (params.n_encoder_cache)
    std::unique_ptr<om::encoder_cache> audio_cache;

    ggml_tensor * tok_embd    = nullptr;    // [n_embd, n_vocab]
    ggml_tensor * output_norm = nullptr;    // [n_embd]
    ggml_tensor * output      = nullptr;    // [n_embd, n_vocab]; == tok_embd when tied
    std::vector<om::decoder_layer> layers;

    ggml_backend_dev_t device = nullptr;    // where the graphs run (a GPU, or the CPU)
    ggml_backend_dev_t cpu_device = nullptr;
    int32_t n_threads = 1;

    om::media_tokens media_tokens;
    llama_model * vocab_model = nullptr;    // libllama, loaded vocabulary-only
    const llama_vocab * vocab = nullptr;

    ~om_model();
};

namespace om {

// Loads and validates a text GGUF; throws om::error with a message that names the problem.
om_model * load_model(const char * path, const om_model_params & params);

// Creates a compute backend for the model's device, with the model's thread count.
ggml_backend_t init_backend(const om_model & model, ggml_backend_dev_t device);

} // namespace om
