// Media in a stream: audio-visual blocks fed in pieces of any size and evaluated chunk by chunk (2 s each)
// with the encoders and TMRoPE positions; still images as blocks of their own. See media-block.h.
#include "stream/stream.h"

#include "media/image-preprocess.h"
#include "model/qwen25-audio.h"

#include <algorithm>
#include <cstring>

namespace {

using namespace om;

// Pixel budgets of Qwen2.5-Omni's processor: per video frame, and for a still image.
constexpr int64_t k_video_min_pixels = 128 * 28 * 28;
constexpr int64_t k_video_max_pixels = 768 * 28 * 28;
constexpr int64_t k_image_min_pixels = 4 * 28 * 28;
constexpr int64_t k_image_max_pixels = 16384 * 28 * 28;

int32_t special(const om_model & m, int32_t id, const char * name) {
    if (id < 0) {
        fail(OM_STATUS_UNSUPPORTED, "%s has no %s token, so it cannot take media; convert a Qwen2.5-Omni checkpoint "
             "with its tokenizer", m.path.c_str(), name);
    }
    return id;
}

// Appends one merged-cell position triple per token of `n_grids` temporal patches of a (gh, gw) patch grid.
void add_grid_positions(std::vector<int32_t> & pos, int32_t t, int32_t s, int32_t gh, int32_t gw) {
    for (int32_t i = 0; i < gh / k_vit_merge; ++i) {
        for (int32_t j = 0; j < gw / k_vit_merge; ++j) {
            pos.insert(pos.end(), {t, s + i, s + j});
        }
    }
}

} // namespace

void om_stream::atomically(const std::function<void()> & change) {
    const int32_t n_tokens_before = n_tokens, next_pos_before = next_pos;
    std::unique_ptr<om::media_block> block_before = block ? std::make_unique<om::media_block>(*block) : nullptr;
    const int32_t block_opened_before = block_opened_at;
    try {
        change();
    } catch (...) {
        restore(n_tokens_before, next_pos_before);
        block = std::move(block_before);
        block_opened_at = block_opened_before;
        throw;
    }
}

void om_stream::feed_special(std::initializer_list<int32_t> tokens, int32_t pos) {
    const std::vector<int32_t> ids(tokens);
    const std::vector<int32_t> positions(ids.size() * 3, pos);
    const std::vector<om::modality> text(ids.size(), om::modality::text);
    feed({ids.data(), nullptr, positions.data(), text.data(), int32_t(ids.size())}, false);
}

void om_stream::feed_media(const uint8_t * frames, int32_t n_frames, int32_t height, int32_t width, float fps,
                           const float * pcm, int64_t n_samples) {
    ingest_timer timer(*this);
    const bool video = frames != nullptr && n_frames > 0, audio = pcm != nullptr && n_samples > 0;
    if (!video && !audio) {
        fail(OM_STATUS_INVALID_ARGUMENT, "feed_media needs video frames, audio samples, or both");
    }
    if (video && (height <= 0 || width <= 0 || !(fps > 0.0f))) {
        fail(OM_STATUS_INVALID_ARGUMENT, "video frames need a positive height, width and fps (got %dx%d at %g fps)",
             height, width, double(fps));
    }
    const projector * proj = model.projector.get();
    if ((audio && (proj == nullptr || !proj->audio)) || (video && (proj == nullptr || !proj->vision))) {
        fail(OM_STATUS_INVALID_ARGUMENT, "no %s encoder is loaded: load the model with its projector file (mmproj=...) "
             "converted with `omnimem convert --mmproj`", audio && (proj == nullptr || !proj->audio) ? "audio" : "vision");
    }
    reopen_block.reset();
    atomically([&] {
        if (block && ((video && !block->has_video) || (audio && !block->has_audio))) {
            fail(OM_STATUS_INVALID_ARGUMENT, "the open block has no %s track; feed the same tracks until the block is "
                 "closed (feeding text or calling close_media closes it)", video ? "video" : "audio");
        }
        if (!block) {
            open_block(video, audio);
        }
        media_block & b = *block;
        if (video) {
            if (b.frame_height == 0) {
                const image_size r = smart_resize(height, width, k_video_min_pixels, k_video_max_pixels);
                b.frame_height = height;
                b.frame_width = width;
                b.resized_height = r.height;
                b.resized_width = r.width;
                b.fps = fps;
            } else if (height != b.frame_height || width != b.frame_width || fps != b.fps) {
                fail(OM_STATUS_INVALID_ARGUMENT, "frames of one block must keep their size and rate (%dx%d at %g fps, "
                     "got %dx%d at %g)", b.frame_height, b.frame_width, double(b.fps), height, width, double(fps));
            }
            b.frames.insert(b.frames.end(), frames, frames + size_t(n_frames) * size_t(height) * size_t(width) * 3);
        }
        if (audio) {
            b.mel.push(pcm, n_samples);
        }
        while (b.next_chunk_ready(false)) {
            eval_chunk(false);
        }
    });
}

void om_stream::open_block(bool video, bool audio) {
    const om::media_tokens & t = model.media_tokens;
    const int32_t n_mel = audio ? model.projector->audio->n_mel : 1;
    auto b = std::make_unique<om::media_block>(n_mel);
    b->has_video = video;
    b->has_audio = audio;
    block_opened_at = n_tokens;
    const int32_t p = next_pos;
    if (video && audio) {
        feed_special({special(model, t.vision_bos, "<|vision_bos|>"), special(model, t.audio_bos, "<|audio_bos|>")}, p);
    } else if (video) {
        feed_special({special(model, t.vision_bos, "<|vision_bos|>")}, p);
    } else {
        feed_special({special(model, t.audio_bos, "<|audio_bos|>")}, p);
    }
    b->start = p + 1;
    block = std::move(b);
}

void om_stream::eval_chunk(bool final) {
    media_block & b = *block;
    const int32_t n_embd = model.hparams.n_embd;
    const int64_t c = b.chunks_done;
    std::vector<float> embd;
    std::vector<int32_t> pos;
    std::vector<om::modality> mods;

    if (b.has_video) {
        const int64_t available = b.grids_done + (b.pending_frames() + k_vit_temporal - 1) / k_vit_temporal;
        const int64_t n_grids = std::min(b.grids_before_chunk_end(c), available) - b.grids_done;
        if (n_grids > 0) {
            const int32_t n_frames = int32_t(std::min<int64_t>(n_grids * k_vit_temporal, b.pending_frames()));
            const patch_grid grid = patch_grid_of(n_frames, b.resized_height, b.resized_width);
            std::vector<float> patches(size_t(grid.n_patches()) * k_vit_patch_dim);
            image_patches(b.frames.data(), n_frames, b.frame_height, b.frame_width, b.resized_height, b.resized_width,
                          patches.data());
            const int32_t thw[3] = {grid.t, grid.h, grid.w};
            const int32_t n_tok = count_image_tokens(int32_t(grid.n_patches()), thw);
            embd.resize(size_t(n_tok) * size_t(n_embd));
            encode_image(patches.data(), thw, embd.data());
            for (int32_t g = 0; g < grid.t; ++g) {
                add_grid_positions(pos, b.start + int32_t(b.grid_time(b.grids_done + g)), b.start, grid.h, grid.w);
            }
            mods.assign(size_t(n_tok), om::modality::visual);
            b.frames.erase(b.frames.begin(), b.frames.begin() + ptrdiff_t(size_t(n_frames) * size_t(b.frame_height) *
                                                                       size_t(b.frame_width) * 3));
            b.grids_done += grid.t;
        }
    }
    if (b.has_audio) {
        const int64_t n_frames = std::min<int64_t>(k_mel_frames_per_chunk, b.mel.n_ready());
        if (n_frames > 0 && (final || n_frames == k_mel_frames_per_chunk)) {
            const int32_t n_mel = model.projector->audio->n_mel;
            std::vector<float> mel(size_t(n_frames) * size_t(n_mel));
            b.mel.take(n_frames, mel.data());
            const int32_t n_tok = count_audio_tokens(n_mel, int32_t(n_frames));
            const size_t offset = embd.size();
            embd.resize(offset + size_t(n_tok) * size_t(n_embd));
            if (n_tok > 0) {
                encode_audio(mel.data(), int32_t(n_frames), embd.data() + offset);
            }
            for (int32_t k = 0; k < n_tok; ++k) {
                const int32_t p = b.start + int32_t(b.audio_tokens_done) + k;
                pos.insert(pos.end(), {p, p, p});
            }
            mods.insert(mods.end(), size_t(n_tok), om::modality::audio);
            b.audio_tokens_done += n_tok;
        }
    }
    b.chunks_done += 1;
    if (!mods.empty()) {
        feed({nullptr, embd.data(), pos.data(), mods.data(), int32_t(mods.size())}, !final);
    }
}

void om_stream::close_media() {
    if (!block) {
        return;
    }
    ingest_timer timer(*this);
    // kept so that a rollback to this point (the end of an ask) reopens the block as it was
    auto saved = std::make_unique<om::media_block>(*block);
    const int32_t saved_at = n_tokens, opened_at = block_opened_at;
    atomically([&] {
        media_block & b = *block;
        if (b.has_audio) {
            b.mel.finish();
        }
        while (b.next_chunk_ready(true)) {
            eval_chunk(true);
        }
        const om::media_tokens & t = model.media_tokens;
        if (b.has_video && b.has_audio) {
            feed_special({special(model, t.audio_eos, "<|audio_eos|>"), special(model, t.vision_eos, "<|vision_eos|>")},
                         next_pos);
        } else if (b.has_video) {
            feed_special({special(model, t.vision_eos, "<|vision_eos|>")}, next_pos);
        } else {
            feed_special({special(model, t.audio_eos, "<|audio_eos|>")}, next_pos);
        }
        block.reset();
    });
    reopen_block = std::move(saved);
    reopen_at = saved_at;
    reopen_opened_at = opened_at;
}

void om_stream::feed_image(const uint8_t * rgb, int32_t height, int32_t width) {
    ingest_timer timer(*this);
    if (rgb == nullptr || height <= 0 || width <= 0) {
        fail(OM_STATUS_INVALID_ARGUMENT, "feed_image needs an RGB image of positive size");
    }
    if (model.projector == nullptr || !model.projector->vision) {
        fail(OM_STATUS_INVALID_ARGUMENT, "no vision encoder is loaded: load the model with its projector file "
             "(mmproj=...) converted with `omnimem convert --mmproj`");
    }
    close_media();
    reopen_block.reset();
    const image_size r = smart_resize(height, width, k_image_min_pixels, k_image_max_pixels);
    const patch_grid grid = patch_grid_of(1, r.height, r.width);
    std::vector<float> patches(size_t(grid.n_patches()) * k_vit_patch_dim);
    image_patches(rgb, 1, height, width, r.height, r.width, patches.data());
    const int32_t thw[3] = {grid.t, grid.h, grid.w};
    const int32_t n_tok = count_image_tokens(int32_t(grid.n_patches()), thw);
    std::vector<float> embd(size_t(n_tok) * size_t(model.hparams.n_embd));
    encode_image(patches.data(), thw, embd.data());

    atomically([&] {
        const om::media_tokens & t = model.media_tokens;
        const int32_t p = next_pos, s = p + 1;
        feed_special({special(model, t.vision_bos, "<|vision_bos|>")}, p);
        std::vector<int32_t> pos;
        add_grid_positions(pos, s, s, grid.h, grid.w);
        const std::vector<om::modality> visual(size_t(n_tok), om::modality::visual);
        feed({nullptr, embd.data(), pos.data(), visual.data(), n_tok}, true);
        feed_special({special(model, t.vision_eos, "<|vision_eos|>")}, next_pos);
    });
}
