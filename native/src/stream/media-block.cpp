#include "stream/media-block.h"

#include "serialize.h"

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

void media_block::save(byte_writer & w) const {
    w.value(has_video);
    w.value(has_audio);
    w.value(start);
    w.value(fps);
    w.value(frame_height);
    w.value(frame_width);
    w.value(resized_height);
    w.value(resized_width);
    w.vector(frames);
    w.value(grids_done);
    mel.save(w);
    w.value(audio_tokens_done);
    w.value(chunks_done);
}

void media_block::load(byte_reader & r) {
    has_video = r.value<bool>();
    has_audio = r.value<bool>();
    start = r.value<int32_t>();
    fps = r.value<float>();
    frame_height = r.value<int32_t>();
    frame_width = r.value<int32_t>();
    resized_height = r.value<int32_t>();
    resized_width = r.value<int32_t>();
    frames = r.vector<uint8_t>(uint64_t(1) << 40);
    grids_done = r.value<int64_t>();
    mel.load(r);
    audio_tokens_done = r.value<int64_t>();
    chunks_done = r.value<int64_t>();
    if (frame_height < 0 || frame_width < 0 ||
        (frame_height > 0 && frames.size() % (size_t(frame_height) * size_t(frame_width) * 3) != 0)) {
        r.corrupt();
    }
}

} // namespace om
