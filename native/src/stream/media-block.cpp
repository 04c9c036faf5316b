#include "stream/media-block.h"

#include "media/image-preprocess.h"

#include <cmath>

namespace om {

int64_t media_block::pending_frames() const {
    const size_t frame_bytes = size_t(frame_height) * size_t(frame_width) * 3;
    return frame_bytes == 0 ? 0 : int64_t(frames.size() / frame_bytes);
}

int64_t media_block::grid_time(int64_t g) const {
    const double seconds_per_grid = double(k_vit_temporal) / double(fps);
    return int64_t(std::floor(double(g) * seconds_per_grid * k_tokens_per_second));
}

int64_t media_block::grids_before_chunk_end(int64_t c) const {
    const int64_t end = (c + 1) * k_chunk_positions;
    int64_t g = grids_done;
    while (grid_time(g) < end) {
        ++g;
    }
    return g;
}

bool media_block::next_chunk_ready(bool final) const {
    if (final) {
        return has_pending();
    }
    const int64_t c = chunks_done;
    if (has_video) {
        const int64_t frames_needed = (grids_before_chunk_end(c) - grids_done) * k_vit_temporal;
        if (pending_frames() < frames_needed) {
            return false;
        }
    }
    if (has_audio && mel.n_ready() < k_mel_frames_per_chunk) {
        return false;
    }
    return true;
}

bool media_block::has_pending() const {
    return pending_frames() > 0 || (has_audio && mel.n_ready() > 0);
}

} // namespace om
