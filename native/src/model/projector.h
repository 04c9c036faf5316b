// The multimodal projector file (GGUF architecture "clip", projector type "qwen2.5o"): the audio tower
// of the Qwen2.5-Omni thinker, loaded onto the text model's device. (The vision tower joins it here.)
#pragma once

#include "model/weight-file.h"

#include <memory>
#include <vector>

namespace om {

struct audio_layer {
    ggml_tensor * ln1_w = nullptr;     // [n_embd]
    ggml_tensor * ln1_b = nullptr;
    ggml_tensor * wq = nullptr;        // [n_embd, n_embd]
    ggml_tensor * bq = nullptr;
    ggml_tensor * wk = nullptr;        // (no bias)
    ggml_tensor * wv = nullptr;
    ggml_tensor * bv = nullptr;
    ggml_tensor * wo = nullptr;
    ggml_tensor * bo = nullptr;
    ggml_tensor * ln2_w = nullptr;
    ggml_tensor * ln2_b = nullptr;
    ggml_tensor * ffn_up_w = nullptr;  // [n_embd, n_ff]
    ggml_tensor * ffn_up_b = nullptr;
    ggml_tensor * ffn_down_w = nullptr;// [n_ff, n_embd]
    ggml_tensor * ffn_down_b = nullptr;
};

struct audio_tower {
    int32_t n_mel = 0;
    int32_t n_embd = 0;
    int32_t n_layer = 0;
    int32_t n_head = 0;
    int32_t n_ff = 0;
    int32_t n_out = 0;                 // the text model's embedding width
    int32_t n_window = 100;            // attention runs within chunks of 2 * n_window mel frames (2 s)
    int32_t n_positions = 0;           // rows of the sinusoidal position table
    float   eps = 1e-5f;

    ggml_tensor * conv1_w = nullptr;   // [3, n_mel, n_embd]
    ggml_tensor * conv1_b = nullptr;   // [1, n_embd]
    ggml_tensor * conv2_w = nullptr;   // [3, n_embd, n_embd]
    ggml_tensor * conv2_b = nullptr;
    ggml_tensor * pos_embd = nullptr;  // [n_embd, n_positions]
    ggml_tensor * post_ln_w = nullptr;
    ggml_tensor * post_ln_b = nullptr;
    ggml_tensor * proj_w = nullptr;    // [n_embd, n_out]
    ggml_tensor * proj_b = nullptr;
    std::vector<audio_layer> layers;
};

struct projector {
    std::unique_ptr<weight_file> file;
    std::unique_ptr<audio_tower> audio;   // null when the file has no audio encoder
};

// Loads a projector file for a text model of width n_embd_text onto `device`; throws om::error.
std::unique_ptr<projector> load_projector(const std::string & path, int32_t n_embd_text, ggml_backend_dev_t device,
                                          bool use_mmap);

} // namespace om
