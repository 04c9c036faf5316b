// The multimodal projector file (GGUF architecture "clip", projector type "qwen2.5o"): the vision and audio
// towers of the Qwen2.5-Omni thinker, loaded onto the text model's device.
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

struct vision_layer {
    ggml_tensor * ln1_w = nullptr;       // [n_embd] (RMSNorm)
    ggml_tensor * wq = nullptr;          // [n_embd, n_embd]
    ggml_tensor * bq = nullptr;
    ggml_tensor * wk = nullptr;
    ggml_tensor * bk = nullptr;
    ggml_tensor * wv = nullptr;
    ggml_tensor * bv = nullptr;
    ggml_tensor * wo = nullptr;
    ggml_tensor * bo = nullptr;
    ggml_tensor * ln2_w = nullptr;
    ggml_tensor * ffn_gate_w = nullptr;  // [n_embd, n_ff]
    ggml_tensor * ffn_gate_b = nullptr;
    ggml_tensor * ffn_up_w = nullptr;    // [n_embd, n_ff]
    ggml_tensor * ffn_up_b = nullptr;
    ggml_tensor * ffn_down_w = nullptr;  // [n_ff, n_embd]
    ggml_tensor * ffn_down_b = nullptr;
    bool full_attention = false;         // attends over its whole frame instead of within windows
};

// The Qwen2.5-VL ViT. Its input patches are OM_IMAGE_PATCH_DIM values each ([3][2][14][14]), the layout
// om_image_patches writes, so the loader accepts only that patch geometry.
struct vision_tower {
    int32_t n_embd = 0;
    int32_t n_layer = 0;
    int32_t n_head = 0;
    int32_t n_ff = 0;
    int32_t n_out = 0;                   // the text model's embedding width
    int32_t patch_size = 14;             // pixels per patch side
    int32_t merge = 2;                   // patches per merged token side (spatial_merge_size)
    int32_t window_cells = 4;            // merged tokens per attention window side (112 px windows)
    float   eps = 1e-6f;

    ggml_tensor * patch_embd[2] = {};    // the Conv3d kernel's temporal slices, [14, 14, 3, n_embd] each
    ggml_tensor * post_ln_w = nullptr;   // the merger's RMSNorm, [n_embd]
    ggml_tensor * mm0_w = nullptr;       // [n_embd * merge², n_embd * merge²]
    ggml_tensor * mm0_b = nullptr;
    ggml_tensor * mm2_w = nullptr;       // [n_embd * merge², n_out]
    ggml_tensor * mm2_b = nullptr;
    std::vector<vision_layer> layers;
};

struct projector {
    std::unique_ptr<weight_file> file;
    std::unique_ptr<vision_tower> vision; // null when the file has no vision encoder
    std::unique_ptr<audio_tower> audio;   // null when the file has no audio encoder
};

// Loads a projector file for a text model of width n_embd_text onto `device`; throws om::error.
std::unique_ptr<projector> load_projector(const std::string & path, int32_t n_embd_text, ggml_backend_dev_t device,
                                          bool use_mmap);

} // namespace om
