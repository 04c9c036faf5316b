// om_stream: one session over a model — its memory (kv_cache), the positions it hands out, the ggml
// scheduler that evaluates batches, and the last token's logits.
#pragma once

#include "memory/kv-cache.h"
#include "model/model.h"
#include "stream/media-block.h"

#include <functional>
#include <initializer_list>
#include <memory>
#include <utility>
#include <vector>

struct om_stream {
    om_stream(om_model & model, const om_stream_params & params);
    ~om_stream();

    // Evaluates text tokens at the next positions; all or nothing (see om_stream_feed_tokens).
    void feed_tokens(const int32_t * tokens, int32_t n_tokens);
    // Evaluates input embeddings [n][n_embd] at explicit positions [n][3]; all or nothing.
    void feed_embeddings(const float * embeddings, const int32_t * positions, const om::modality * modality,
                         int32_t n);
    void rollback(int32_t n_tokens);

    // Media (om_stream_feed_media / _close_media / _feed_image): see stream-media.cpp.
    void feed_media(const uint8_t * frames, int32_t n_frames, int32_t height, int32_t width, float fps,
                    const float * pcm, int64_t n_samples);
    void close_media();
    void feed_image(const uint8_t * rgb, int32_t height, int32_t width);
    bool media_open() const { return block != nullptr; }

    // Audio tokens a log-mel clip of n_frames becomes (checks that an audio tower is loaded for n_mel bins).
    int32_t count_audio_tokens(int32_t n_mel, int32_t n_frames) const;
    // Runs the audio tower on mel [n_mel][n_frames]; writes [n_tokens][n_embd] to out.
    void encode_audio(const float * mel, int32_t n_frames, float * out);
    // Merged tokens a grid (t, h, w) of n_patches patches becomes (checks that a vision tower is loaded and
    // that the grid is one it can merge and holds exactly n_patches).
    int32_t count_image_tokens(int32_t n_patches, const int32_t grid_thw[3]) const;
    // Runs the vision tower on patches [n_patches][OM_IMAGE_PATCH_DIM] of a checked grid; writes
    // [n_tokens][n_embd] to out in raster order (t, h / merge, w / merge).
    void encode_image(const float * patches, const int32_t grid_thw[3], float * out);

    om_model & model;
    om_stream_params params;
    std::unique_ptr<om::kv_cache> kv;
    std::vector<float> logits;           // of the last evaluated token; empty when unavailable
    int32_t n_tokens = 0;                // tokens fed
    int32_t next_pos = 0;                // 1 + the largest position on any axis so far (TMRoPE's rule)

private:
    // One batch of inputs: token ids or embeddings, with positions [n][3] and modalities [n].
    struct batch {
        const int32_t *      tokens;
        const float *        embeddings;
        const int32_t *      positions;
        const om::modality * modality;
        int32_t              n;
    };
    void feed(const batch & all);           // splits into n_batch pieces; all or nothing
    void eval_batch(const batch & b);

    // Builds a graph in the stream's graph memory and runs it: build(ctx, gf) adds the nodes and returns
    // what uploads the inputs once the scheduler allocated them; read() then copies the outputs out.
    template <typename Build, typename Read>
    void compute(Build && build, Read && read);

    std::vector<ggml_backend_t> backends;   // compute device first, CPU last
    ggml_backend_sched_t sched = nullptr;
    // Runs `change`; if it throws, the stream returns to its state before (memory, positions, block).
    void atomically(const std::function<void()> & change);
    void feed_special(std::initializer_list<int32_t> tokens, int32_t pos);  // tokens sharing one position
    void open_block(bool video, bool audio);
    void eval_chunk(bool final);

    std::unique_ptr<om::media_block> block;         // the open audio-visual block, if any
    int32_t block_opened_at = 0;                    // n_tokens before its opening tokens
    // The block as it was when close_media() last closed it at n_tokens == reopen_at: a rollback to that
    // point (the end of an ask) reopens it, so the stream goes on as if the question never came.
    std::unique_ptr<om::media_block> reopen_block;
    int32_t reopen_at = -1, reopen_opened_at = 0;

    std::vector<uint8_t> graph_meta;        // memory of the graph's tensor descriptions
    size_t graph_size = 0;
    // (n_tokens, next_pos) at the end of every feed: the points a rollback may return to
    std::vector<std::pair<int32_t, int32_t>> boundaries;
};
