// The Qwen2.5-VL ViT of the Qwen2.5-Omni thinker over ggml: 2-frame patches -> patch embedding (the Conv3d as
// one matmul) -> pre-RMSNorm blocks with 2-D rotary positions and SwiGLU, attending within 112-px windows
// except the full-attention blocks, which attend over their whole frame (one temporal slice) -> RMSNorm ->
// 2x2 merge -> MLP into the text model's width.
//
// Inside the graph the rows run in window order: frame by frame, windows in raster order (partial ones at the
// right and bottom edges), a window's merged cells in raster order, a cell's 2x2 patches together. The host
// computes that order once per grid (vision_layout); the output is put back into raster order (t, h/2, w/2).
#pragma once

#include "model/projector.h"

#include <vector>

namespace om {

// Where every row goes for one grid of t x h x w patches: graph inputs computed on the host.
struct vision_layout {
    int32_t n_patches  = 0;
    int32_t n_tokens   = 0;          // merged tokens: t * (h / merge) * (w / merge)
    int32_t n_frames   = 0;          // temporal slices (t); full attention stays within one
    int32_t n_windows  = 0;
    int32_t window_len = 0;          // patches of the largest window, the length every window is padded to
    std::vector<int32_t> order;      // [n_patches] the input patch each row (window order) holds
    std::vector<int32_t> positions;  // [4 * n_patches] each row's patch row, then column, then 2 unused sets
    std::vector<int32_t> raster;     // [n_tokens] the merged row (window order) of each token in raster order
    // Only when some window is partial (otherwise windows are equal, consecutive blocks of rows):
    std::vector<int32_t>     slots;      // [n_windows * window_len] the row each padded slot reads (0 for padding)
    std::vector<int32_t>     row_slots;  // [n_patches] the slot of each row
    std::vector<ggml_fp16_t> slot_mask;  // [n_windows][window_len][window_len] -inf where the key is padding
};

// The layout of a grid the caller has validated: t, h, w positive, h and w multiples of v.merge.
vision_layout plan_vision_layout(const vision_tower & v, int32_t t, int32_t h, int32_t w);

struct vision_graph {
    ggml_tensor * patches   = nullptr;   // F32 [OM_IMAGE_PATCH_DIM, n_patches], in the caller's raster order
    ggml_tensor * order     = nullptr;   // I32 [n_patches]
    ggml_tensor * positions = nullptr;   // I32 [4 * n_patches]
    ggml_tensor * raster    = nullptr;   // I32 [n_tokens]
    ggml_tensor * slots     = nullptr;   // I32 [n_windows * window_len], or null when unused
    ggml_tensor * row_slots = nullptr;   // I32 [n_patches], or null when unused
    ggml_tensor * slot_mask = nullptr;   // F16 [window_len, window_len, 1, n_windows], or null when unused
    ggml_tensor * out       = nullptr;   // F32 [n_out, n_tokens]
};

vision_graph build_vision_graph(ggml_context * ctx, ggml_cgraph * gf, const vision_tower & v,
                                const vision_layout & layout);

// Uploads the patches [n_patches][OM_IMAGE_PATCH_DIM] and the layout once the graph is allocated.
void set_vision_inputs(const vision_graph & g, const vision_layout & layout, const float * patches);

} // namespace om
