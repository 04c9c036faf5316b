// The media preprocessing functions of omnimem.h: argument checks, output sizes, and the exception
// boundary (api-guard.h).
#include "api-guard.h"
#include "media/audio-mel.h"
#include "media/image-preprocess.h"

#include <algorithm>
#include <vector>

static_assert(OM_AUDIO_SAMPLE_RATE == om::k_mel_sample_rate, "omnimem.h and the mel front end disagree");
static_assert(OM_IMAGE_PATCH_DIM == om::k_vit_patch_dim, "omnimem.h and the patch layout disagree");

namespace {

// The buffer contract of every sized output: fail with the need reported when the caller's buffer is short.
void require_capacity(const void * out, int64_t capacity, int64_t needed, const char * what) {
    if (capacity < needed || (needed > 0 && out == nullptr)) {
        om::fail(OM_STATUS_BUFFER_TOO_SMALL, "%s need %lld floats, the buffer holds %lld", what, (long long) needed,
                 (long long) (out == nullptr ? 0 : capacity));
    }
}

} // namespace

// The handle is the stream itself; the C type only names it.
struct om_log_mel_stream : om::log_mel_stream {
    using om::log_mel_stream::log_mel_stream;
};

extern "C" {

om_status om_audio_log_mel(const float * pcm, int64_t n_samples, int32_t n_mel, float * out, int64_t out_capacity,
                           int64_t * n_frames_out) {
    return om::guarded([&] {
        om::require(n_frames_out != nullptr, "om_audio_log_mel: n_frames_out is NULL");
        *n_frames_out = 0;
        om::require(pcm != nullptr, "om_audio_log_mel: pcm is NULL");
        om::check_n_mel(n_mel);
        // Empty audio gives no frames, passes the size check and is refused by log_mel with its reason.
        const int64_t n_frames = om::log_mel_n_frames(n_samples);
        *n_frames_out = n_frames;
        require_capacity(out, out_capacity, n_frames * n_mel, "the log-mel features");
        om::log_mel(pcm, n_samples, n_mel, out);
    });
}

om_status om_audio_mel_filters(int32_t n_mel, float * out, int64_t out_capacity) {
    return om::guarded([&] {
        const std::vector<double> bank = om::mel_filterbank(n_mel);
        require_capacity(out, out_capacity, int64_t(bank.size()), "the mel filters");
        std::copy(bank.begin(), bank.end(), out);
    });
}

om_status om_log_mel_stream_init(int32_t n_mel, om_log_mel_stream ** out_stream) {
    if (out_stream != nullptr) {
        *out_stream = nullptr;
    }
    return om::guarded([&] {
        om::require(out_stream != nullptr, "om_log_mel_stream_init: out_stream is NULL");
        *out_stream = new om_log_mel_stream(n_mel);
    });
}

void om_log_mel_stream_free(om_log_mel_stream * stream) { delete stream; }

om_status om_log_mel_stream_push(om_log_mel_stream * stream, const float * pcm, int64_t n_samples) {
    return om::guarded([&] {
        om::require(stream != nullptr, "om_log_mel_stream_push: stream is NULL");
        om::require(pcm != nullptr || n_samples == 0, "om_log_mel_stream_push: pcm is NULL");
        stream->push(pcm, n_samples);
    });
}

om_status om_log_mel_stream_finish(om_log_mel_stream * stream) {
    return om::guarded([&] {
        om::require(stream != nullptr, "om_log_mel_stream_finish: stream is NULL");
        stream->finish();
    });
}

int64_t om_log_mel_stream_n_ready(const om_log_mel_stream * stream) {
    return stream != nullptr ? stream->n_ready() : 0;
}

int64_t om_log_mel_stream_n_samples(const om_log_mel_stream * stream) {
    return stream != nullptr ? stream->n_samples() : 0;
}

int64_t om_log_mel_stream_n_taken(const om_log_mel_stream * stream) {
    return stream != nullptr ? stream->n_taken() : 0;
}

om_status om_log_mel_stream_take(om_log_mel_stream * stream, int64_t n_frames, float * out, int64_t out_capacity) {
    return om::guarded([&] {
        om::require(stream != nullptr, "om_log_mel_stream_take: stream is NULL");
        require_capacity(out, out_capacity, n_frames * stream->n_mel(), "the log-mel frames");
        stream->take(n_frames, out);
    });
}

om_status om_image_smart_resize(int32_t height, int32_t width, int64_t min_pixels, int64_t max_pixels,
                                int32_t * out_height, int32_t * out_width) {
    return om::guarded([&] {
        om::require(out_height != nullptr && out_width != nullptr, "om_image_smart_resize: NULL output");
        const om::image_size size = om::smart_resize(height, width, min_pixels, max_pixels);
        *out_height = size.height;
        *out_width = size.width;
    });
}

om_status om_image_patches(const uint8_t * rgb, int32_t n_frames, int32_t height, int32_t width,
                           int32_t resized_height, int32_t resized_width, float * out, int64_t out_capacity,
                           int32_t * grid_thw_out) {
    return om::guarded([&] {
        om::require(rgb != nullptr && grid_thw_out != nullptr,
                    "om_image_patches: rgb and grid_thw_out must not be NULL");
        const om::patch_grid grid = om::patch_grid_of(n_frames, resized_height, resized_width);
        grid_thw_out[0] = grid.t;
        grid_thw_out[1] = grid.h;
        grid_thw_out[2] = grid.w;
        require_capacity(out, out_capacity, grid.n_patches() * om::k_vit_patch_dim, "the patches");
        om::image_patches(rgb, n_frames, height, width, resized_height, resized_width, out);
    });
}

} // extern "C"
