// om_stream: one session over a model — its memory (the cache manager), the positions it hands out, the
// ggml scheduler that evaluates batches, and the last token's logits.
#pragma once

#include "memory/cache-manager.h"
#include "memory/calibration.h"
#include "model/qwen2vl.h"
#include "model/model.h"
#include "stream/op-profile.h"
#include "stream/media-block.h"

#include <chrono>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
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

    // Writes the whole stream to path / restores one from such a file (see stream-file.cpp).
    void save(const std::string & path) const;
    static std::unique_ptr<om_stream> load(om_model & model, const std::string & path);

    // Calibration (om_stream_calibrate): while on, every batch with media adds each layer's signals.
    void set_calibration(bool on);
    std::vector<float> calibration_means() const;

    // Per-operation profile (om_stream_profile): while on, every graph is computed node by node and timed.
    void set_profile(bool on);
    std::vector<om_op_time> profile_totals() const;

    void get_stats(om_stream_stats & out) const;
    void get_layer_stats(int32_t il, om_layer_stats & out) const;

    om_model & model;
    om_stream_params params;
    std::unique_ptr<om::cache_manager> memory;
    std::unique_ptr<om::calibration> calibration;   // while calibrating
    std::unique_ptr<om::op_profile> profile;         // while profiling
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
    // Splits into n_batch pieces; all or nothing. compact: the feed is a chunk of media after which the
    // cache manager compacts (the flush of a closing block is not, so that a question asked at that point
    // and rolled back leaves the memory as it was).
    void feed(const batch & all, bool compact);
    void eval_batch(const batch & b, const om::score_request & scoring);
    void read_calibration(const om::decoder_graph & g, const batch & b);
    void compact_memory();                  // runs the cache manager's compaction; fixes the past
    // Returns to n_tokens_before / next_pos_before after a failed change (rows past it dropped).
    void restore(int32_t n_tokens_before, int32_t next_pos_before);
    void forget_boundaries(const std::function<bool(int32_t)> & gone);
    om::graph_runner runner();

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
    int32_t compacted_at = 0;               // n_tokens at the last compaction: no rollback before it

    // Time spent ingesting: public feeding calls nest (text closes a block), only the outermost counts.
    double t_ingest = 0.0;
    int ingest_depth = 0;
    friend struct ingest_timer;
};

// Adds the time until it goes out of scope to the stream's ingest time (outermost feeding call only).
struct ingest_timer {
    explicit ingest_timer(om_stream & s) : stream(s), start(std::chrono::steady_clock::now()) { ++s.ingest_depth; }
    ~ingest_timer() {
        if (--stream.ingest_depth == 0) {
            stream.t_ingest += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        }
    }
    ingest_timer(const ingest_timer &) = delete;
    ingest_timer & operator=(const ingest_timer &) = delete;

    om_stream & stream;
    std::chrono::steady_clock::time_point start;
};
