// An open audio-visual block of a Qwen2.5-Omni stream: the media fed but not yet evaluated, and the
// bookkeeping of time-aligned M-RoPE (TMRoPE) positions, as transformers' get_rope_index lays them out:
//
//   audio only:      <|audio_bos|> A0 A1 ... <|audio_eos|>
//   video only:      <|vision_bos|> V0 V1 ... <|vision_eos|>
//   video + audio:   <|vision_bos|><|audio_bos|> V0 A0 V1 A1 ... <|audio_eos|><|vision_eos|>
//
// The bos tokens share position p; media starts at s = p + 1. Audio token k sits at (s+k, s+k, s+k) and
// temporal patch g of the video (two frames) at t = s + floor(g · (2 / fps) · 25) with (h, w) = s + the
// merged cell's row and column. Chunk c (2 seconds) holds the temporal patches with t - s in [50c, 50c+50)
// and the audio tokens k in [50c, 50c+50) (200 mel frames); the closing tokens take max + 1.
#pragma once

#include "media/audio-mel.h"

#include <cstdint>
#include <vector>

namespace om {

constexpr int32_t k_tokens_per_second  = 25;   // TMRoPE's temporal resolution (position_id_per_seconds)
constexpr int32_t k_chunk_positions    = 50;   // one 2-second chunk
constexpr int32_t k_mel_frames_per_chunk = 200;

struct media_block {
    bool    has_video = false;
    bool    has_audio = false;
    int32_t start = 0;               // s: the position of the first media token

    // video: frames arrive at fps, all resized to one size fixed by the first frame
    float   fps = 2.0f;
    int32_t frame_height = 0, frame_width = 0;
    int32_t resized_height = 0, resized_width = 0;
    std::vector<uint8_t> frames;     // pending frames [n][frame_height][frame_width][3]
    int64_t grids_done = 0;          // temporal patches evaluated so far

    // audio
    log_mel_stream mel;
    int64_t audio_tokens_done = 0;

    int64_t chunks_done = 0;         // chunks evaluated so far

    explicit media_block(int32_t n_mel) : mel(n_mel) {}

    int64_t pending_frames() const;
    // Temporal-patch offset of patch g from the block start (t - s).
    int64_t grid_time(int64_t g) const;
    // Temporal patches whose time falls before the end of chunk c.
    int64_t grids_before_chunk_end(int64_t c) const;
    // Whether chunk `chunks_done` can be evaluated (final: nothing more will arrive).
    bool next_chunk_ready(bool final) const;
    // Whether anything is left to evaluate (after finish of the mel stream).
    bool has_pending() const;

    void save(byte_writer & w) const;
    void load(byte_reader & r);
};

} // namespace om
