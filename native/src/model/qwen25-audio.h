// The Qwen2.5-Omni audio tower over ggml: log-mel frames -> conv1 (k3) -> GELU -> conv2 (k3, stride 2)
// -> GELU -> sinusoidal positions -> pre-LN transformer blocks -> 2x average pooling -> LayerNorm ->
// projection into the text model's width. Attention is bidirectional within 2-second chunks (2 * n_window
// mel frames) and positions restart in every chunk, so one chunk is one graph: a stream encodes its audio
// as it arrives, and the result equals encoding the whole clip at once.
#pragma once

#include "model/projector.h"

namespace om {

struct audio_graph {
    ggml_tensor * mel = nullptr;   // F32 [n_frames, n_mel] (each mel bin's frames contiguous)
    ggml_tensor * out = nullptr;   // F32 [n_out, n_tokens]
};

// Tokens a chunk of n_frames mel frames becomes: conv2 halves it (rounding up), pooling halves it again
// (dropping an odd last frame). 200 frames (2 s) -> 50 tokens: 25 per second.
int32_t audio_chunk_tokens(int32_t n_frames);

audio_graph build_audio_graph(ggml_context * ctx, ggml_cgraph * gf, const audio_tower & a, int32_t n_frames);

} // namespace om
