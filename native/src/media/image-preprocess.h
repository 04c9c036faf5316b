// Image and video-frame preprocessing for the Qwen2.5-VL vision encoder, numerically as transformers' slow
// Qwen2VLImageProcessor does it: resize to a multiple of 28 px within a pixel budget (PIL's antialiased
// bicubic, 8-bit), scale to [0, 1], CLIP mean/std, and cut into 14×14×2-frame patches in the ViT's order.
#pragma once

#include <cstdint>

namespace om {

constexpr int32_t k_vit_patch     = 14;  // spatial patch side, px
constexpr int32_t k_vit_merge     = 2;   // the merger joins 2×2 patches into one token
constexpr int32_t k_vit_temporal  = 2;   // frames per temporal patch
constexpr int32_t k_vit_factor    = k_vit_patch * k_vit_merge;  // resized sides are multiples of this
constexpr int32_t k_vit_patch_dim = 3 * k_vit_temporal * k_vit_patch * k_vit_patch;  // 1176 values

struct image_size {
    int32_t height;
    int32_t width;
};

// The size an image of height×width is resized to: both sides multiples of 28, the area within
// [min_pixels, max_pixels] where the aspect ratio allows, the aspect ratio kept as closely as possible.
image_size smart_resize(int32_t height, int32_t width, int64_t min_pixels, int64_t max_pixels);

struct patch_grid {
    int32_t t;  // temporal patches: pairs of frames (a lone last frame is paired with itself)
    int32_t h;  // patch rows
    int32_t w;  // patch columns

    int64_t n_patches() const { return int64_t(t) * h * w; }
};

patch_grid patch_grid_of(int32_t n_frames, int32_t resized_height, int32_t resized_width);

// n_frames uint8 RGB frames [n_frames][height][width][3] → ViT input patches [n_patches][1176], ordered
// (t, h/2, w/2, mh, mw) with each patch [channel][frame][14][14]. Frames are resized to resized_height ×
// resized_width (multiples of 28) unless already that size. out holds patch_grid_of(...).n_patches()·1176
// floats. Throws om::error on bad arguments.
void image_patches(const uint8_t * rgb, int32_t n_frames, int32_t height, int32_t width, int32_t resized_height,
                   int32_t resized_width, float * out);

} // namespace om
