// omnimem.h — the C API of omnimem.cpp, a runtime for streaming audio-visual LLMs over ggml.
//
// This header is the whole boundary: the Python package binds exactly these declarations (cffi, compiled
// at build time), and a C program can use them directly.
//
// Usage:
//
//     om_model_params mp;  om_model_default_params(&mp);
//     om_model * model;
//     if (om_model_load("model.gguf", &mp, &model) != OM_STATUS_OK) { puts(om_last_error()); return 1; }
//
//     om_stream_params sp; om_stream_default_params(&sp);
//     om_stream * stream;  om_stream_init(model, &sp, &stream);
//
//     int32_t ids[256]; int32_t n;
//     om_tokenize(model, "Hello", true, ids, 256, &n);
//     om_stream_feed_tokens(stream, ids, n);               // prefill
//     om_sampler_params sap; om_sampler_default_params(&sap);
//     om_sampler * sampler; om_sampler_init(&sap, &sampler);
//     int32_t tok; om_sampler_sample(sampler, stream, &tok);   // next token from the last logits
//
//     om_sampler_free(sampler); om_stream_free(stream); om_model_free(model);
//
// Conventions:
//  - Every call that can fail returns an om_status; on failure om_last_error() holds a message for the
//    calling thread that says what went wrong and, where possible, what to do. No C++ exception and no
//    abort crosses this boundary for bad input.
//  - A model is read-only after loading (its encoder cache aside, which locks) and may be shared by several
//    streams; each stream may be used from its own thread. One stream must not be used from two threads at once.
//  - Token ids are int32_t; logits are float32.

#ifndef OMNIMEM_H
#define OMNIMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef OM_API
#    if defined(_WIN32)
#        define OM_API __declspec(dllexport)
#    else
#        define OM_API __attribute__((visibility("default")))
#    endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

// Bumped whenever a struct layout or a function signature changes.
#define OM_ABI_VERSION 1

typedef enum om_status {
    OM_STATUS_OK               = 0,
    OM_STATUS_INVALID_ARGUMENT = 1,  // a parameter is out of range or inconsistent
    OM_STATUS_FILE_NOT_FOUND   = 2,  // the path does not exist or cannot be opened
    OM_STATUS_BAD_FILE         = 3,  // not a GGUF file, truncated or corrupt
    OM_STATUS_UNSUPPORTED      = 4,  // a valid file of an architecture or tensor type this build does not run
    OM_STATUS_MODEL_MISMATCH   = 5,  // hyperparameters or tensors inconsistent (missing tensor, wrong shape)
    OM_STATUS_CONTEXT_FULL     = 6,  // the stream memory has no room left for the fed tokens
    OM_STATUS_NO_TOKENIZER     = 7,  // the GGUF carries no tokenizer (converted without tokenizer files)
    OM_STATUS_BUFFER_TOO_SMALL = 8,  // an output buffer is too small; the required size is reported
    OM_STATUS_BACKEND_ERROR    = 9,  // a ggml backend failed to allocate or compute
    OM_STATUS_INTERNAL         = 10, // a bug: please report it with the message
} om_status;

// Message of the last failed call made on the calling thread ("" if none). Valid until the next call.
OM_API const char * om_last_error(void);

// Stable lower-case name of a status ("ok", "file_not_found", ...).
OM_API const char * om_status_name(om_status status);

// Version string of the library, and a one-line description of the ggml build and devices.
OM_API const char * om_version(void);
OM_API const char * om_system_info(void);

//
// Model: the weights, hyperparameters and tokenizer of a GGUF file. Read-only once loaded.
//

typedef struct om_model om_model;

typedef struct om_model_params {
    const char * mmproj_path; // the multimodal projector GGUF (audio/vision encoders), or NULL for text only
    const char * device;     // "auto" (first GPU, else CPU), "cpu", or a ggml device name such as "CUDA0"
    int32_t      n_threads;  // CPU threads for compute; <= 0: all cores of this machine
    bool         use_mmap;   // map the file instead of reading it (CPU weights are then used in place)
    bool         use_repack; // let the CPU backend repack quantized weights into its faster layouts
    int32_t      n_encoder_cache; // encoder outputs kept per tower for reuse, keyed by their exact input: with
                                  // several streams of this model fed the same media, each chunk is then
                                  // encoded once. 0 (default): off, every call runs the tower
} om_model_params;

OM_API void om_model_default_params(om_model_params * params);

// Loads a text-model GGUF (architecture "qwen2vl"). Validates the header, hyperparameters and every
// tensor's name, type and shape before touching data. On failure *out_model is NULL.
OM_API om_status om_model_load(const char * path, const om_model_params * params, om_model ** out_model);

// Frees a model. Every stream of the model must be freed first. NULL is allowed.
OM_API void om_model_free(om_model * model);

typedef struct om_model_info {
    char     architecture[32];
    char     name[128];          // general.name, or ""
    char     device[64];         // where the weights live ("CPU", "CUDA0", ...)
    int32_t  n_vocab;
    int32_t  n_embd;
    int32_t  n_layer;
    int32_t  n_head;
    int32_t  n_head_kv;
    int32_t  n_embd_head;
    int32_t  n_ff;
    int32_t  n_ctx_train;
    int32_t  rope_sections[4];   // M-RoPE sections (t, h, w, unused) in rotary pairs
    float    rope_freq_base;
    float    rms_norm_eps;
    int64_t  n_params;
    uint64_t weights_bytes;
    uint64_t weights_packed_bytes; // of those, Q8_0/Q4_0 weights packed for our AMX kernels (0 without AMX)
    int32_t  n_threads;
    bool     has_tokenizer;
    bool     tied_embeddings;    // the output head reuses token_embd
    bool     has_audio_encoder;  // a projector with an audio tower is loaded
    bool     has_vision_encoder; // a projector with a vision tower is loaded
    int32_t  audio_n_mel;        // mel bins the audio tower expects (0 without one)
} om_model_info;

OM_API om_status om_model_get_info(const om_model * model, om_model_info * out_info);

// Encoder calls of all the model's streams answered from its encoder cache so far (om_model_params.
// n_encoder_cache), both towers together; 0 for NULL.
OM_API int64_t om_model_encoder_cache_hits(const om_model * model);

//
// Tokenizer (llama.cpp's vocabulary code over the GGUF's tokenizer.ggml.* keys)
//

// Tokenizes UTF-8 text of text_len bytes. parse_special: special tokens written in the text (such as
// "<|im_start|>") become their ids. Writes up to n_tokens_max ids; *n_tokens_out is the number of ids the
// text needs. If that exceeds n_tokens_max, returns OM_STATUS_BUFFER_TOO_SMALL (call again, larger).
OM_API om_status om_tokenize(const om_model * model, const char * text, int32_t text_len, bool parse_special,
                             int32_t * tokens, int32_t n_tokens_max, int32_t * n_tokens_out);

// The bytes of one token (not NUL-terminated; may be part of a multi-byte UTF-8 character).
// special: render control tokens as their text instead of nothing. Same buffer contract as om_tokenize.
OM_API om_status om_token_to_piece(const om_model * model, int32_t token, bool special,
                                   char * buf, int32_t buf_size, int32_t * n_bytes_out);

// True for tokens that end a generation (end of turn, end of text). False without a tokenizer.
OM_API bool om_token_is_eog(const om_model * model, int32_t token);

//
// Stream: one session over a model — its KV memory, positions and last logits.
//

typedef struct om_stream om_stream;

typedef enum om_kv_type {
    OM_KV_TYPE_F16 = 0,  // default: half the memory, flash-attention path
    OM_KV_TYPE_F32 = 1,  // exact; for parity checks and research
} om_kv_type;

// How a stream keeps its memory bounded. Every policy but FULL compacts each layer to its audio and visual
// budget after every chunk of media (a media chunk, an image, or a feed_embeddings call with media rows);
// text rows are always kept, up to text_cap. All policies share these budget semantics; only OMNIMEM budgets
// audio and visual separately, the others keep budget_audio + budget_visual media rows of either kind.
typedef enum om_policy {
    OM_POLICY_FULL            = 0,  // keep every row; budgets are ignored
    OM_POLICY_OMNIMEM         = 1,  // perturbation-aware score, separate audio and visual top-k
    OM_POLICY_OMNIMEM_NOSPLIT = 2,  // the same score, one top-k over audio and visual together
    OM_POLICY_SINK_WINDOW     = 3,  // StreamingLLM: the first n_sink media rows and the most recent ones
    OM_POLICY_ATTENTION_TOPK  = 4,  // H2O / SnapKV style: the rows that received the most attention
    OM_POLICY_UNIFORM         = 5,  // media rows evenly spaced over the whole stream
    OM_POLICY_RANDOM          = 6,  // a seeded random sample of the whole stream's media rows
} om_policy;

// The vectors whose neighbour cosines measure redundancy in the OMNIMEM score.
typedef enum om_redundancy {
    OM_REDUNDANCY_VALUE  = 0,  // the stored V rows: no extra memory (default)
    OM_REDUNDANCY_HIDDEN = 1,  // the layer-input hidden states, as the method defines; n_embd more per row
} om_redundancy;

// Which rows a row's redundancy in the OMNIMEM score is measured against.
typedef enum om_neighbours {
    OM_NEIGHBOURS_SEQUENCE = 0,  // the rows before and after it in its layer, as the method defines (default)
    OM_NEIGHBOURS_FRAME    = 1,  // for a visual row, the rows at its patch position (M-RoPE h and w) in the
                                 // nearest earlier and later frames its layer holds; other rows as SEQUENCE
    OM_NEIGHBOURS_BOTH     = 2,  // a visual row's SEQUENCE score times how much its frame changed: the mean over
                                 // the frame's patches of their FRAME spread
} om_neighbours;

typedef struct om_memory_params {
    om_policy       policy;
    const int32_t * budget;      // [n_layer][2]: audio and visual rows each layer keeps; NULL: unbounded.
                                 // Copied at om_stream_init.
    int32_t         n_extra;     // rows per layer beyond the budget: text (prompt, capped text, questions,
                                 // answers) and the chunk being evaluated; 0: n_batch + 512
    int32_t         text_cap;    // most text rows kept after the first media row (the oldest go); 0: no cap
    float           lam;         // λ: exponent of attention received in the OMNIMEM score (0.02)
    int32_t         n_sink;      // SINK_WINDOW's first media rows (4)
    uint32_t        seed;        // RANDOM's seed
    om_redundancy   redundancy;
    int32_t         n_score_queries;  // most queries of each evaluated batch the attention received is measured
                                      // from (OMNIMEM with lam > 0, ATTENTION_TOPK): every ceil(n / this)-th
                                      // back from the last, the sum scaled to the whole batch. 0: every query,
                                      // the method's exact sum (32)
    om_neighbours   neighbours;
} om_memory_params;

typedef struct om_stream_params {
    int32_t          n_ctx;    // rows of KV memory per layer when the memory is unbounded; 0: the model's
                               // training context. With a budget, each layer gets its budget + n_extra.
    int32_t          n_batch;  // most tokens evaluated in one graph; longer feeds are split
    om_kv_type       kv_type;
    om_memory_params memory;
} om_stream_params;

OM_API void om_stream_default_params(om_stream_params * params);

// Creates a stream over a model. The model must outlive the stream. On failure *out_stream is NULL.
OM_API om_status om_stream_init(om_model * model, const om_stream_params * params, om_stream ** out_stream);

// NULL is allowed.
OM_API void om_stream_free(om_stream * stream);

// Appends text tokens at the next positions and evaluates them; afterwards the logits of the last
// token are available. On failure the stream is left exactly as it was before the call.
OM_API om_status om_stream_feed_tokens(om_stream * stream, const int32_t * tokens, int32_t n_tokens);

// What a fed row is, for the cache manager's separate budgets.
typedef enum om_modality {
    OM_MODALITY_TEXT   = 0,  // text and special tokens
    OM_MODALITY_VISUAL = 1,
    OM_MODALITY_AUDIO  = 2,
} om_modality;

// Appends inputs given as embeddings in the model's input space (encoder outputs, or token embeddings
// computed elsewhere) at explicit M-RoPE positions, and evaluates them. embeddings: [n][n_embd] floats,
// row-major; positions: [n][3] (t, h, w) per input; modality: [n] om_modality values, or NULL for text.
// Later text tokens continue at 1 + the largest position fed on any axis. All or nothing, as above.
OM_API om_status om_stream_feed_embeddings(om_stream * stream, const float * embeddings, const int32_t * positions,
                                           const int8_t * modality, int32_t n);

// Copies the logits of the last evaluated token (n_vocab floats). Fails if nothing was evaluated yet.
OM_API om_status om_stream_get_logits(const om_stream * stream, float * out_logits, int32_t n_vocab);

// Number of tokens fed so far (the length of the sequence, not the rows kept in memory).
OM_API int32_t om_stream_n_tokens(const om_stream * stream);

// Position the next text token gets: 1 + the largest position fed on any axis (0 for an empty stream).
OM_API int32_t om_stream_next_pos(const om_stream * stream);

// Rolls the stream back to its state after its first n_tokens tokens. n_tokens must be a point the
// stream passed at the end of a feed call; the removed tokens' memory rows are dropped and positions
// are restored. The logits become unavailable until the next feed. A compaction fixes the past: after one,
// the stream can roll back only to points at or after it (or to 0, which empties the stream).
OM_API om_status om_stream_rollback(om_stream * stream, int32_t n_tokens);

// Runs the projector's audio tower on log-mel features (layout [n_mel][n_frames], 100 frames per second
// of 16 kHz audio) and writes the audio embeddings [n_tokens][n_embd] into out (25 per second). Attention
// runs within 2-second chunks, so any clip length works and equals encoding it whole. If out_capacity
// (in floats) is too small, returns OM_STATUS_BUFFER_TOO_SMALL with *n_tokens_out set and nothing computed.
// Does not change the stream's memory.
OM_API om_status om_stream_encode_audio(om_stream * stream, const float * mel, int32_t n_mel, int32_t n_frames,
                                        float * out, int64_t out_capacity, int32_t * n_tokens_out);

// Runs the projector's vision tower on the patches of an image or video clip (om_image_patches' output:
// [n_patches][OM_IMAGE_PATCH_DIM], in its order, with grid_thw = (t, h, w) in patches, n_patches = t·h·w) and
// writes the visual embeddings [n_tokens][n_embd] into out, in raster order (t, h/2, w/2): one token per
// 2×2 patches, t·(h/2)·(w/2) in all. Attention runs within 112-px windows, except in the full-attention
// blocks, which see one whole temporal patch (2 frames), never across them. If out_capacity (in floats) is
// too small, returns OM_STATUS_BUFFER_TOO_SMALL with *n_tokens_out set and nothing computed. Does not
// change the stream's memory.
OM_API om_status om_stream_encode_image(om_stream * stream, const float * patches, int32_t n_patches,
                                        const int32_t grid_thw[3], float * out, int64_t out_capacity,
                                        int32_t * n_tokens_out);

// Feeds media into the stream's open audio-visual block, opening it on the first call: video frames
// (uint8 RGB [n_frames][height][width][3] at fps; all frames of a block keep one size and rate), audio
// (float mono PCM at OM_AUDIO_SAMPLE_RATE), or both. Pieces may have any length: the stream evaluates whole
// 2-second chunks as they complete (video temporal patches, then audio tokens, at TMRoPE positions, as
// Qwen2.5-Omni was trained) and keeps the rest until more arrives. A block with video and audio opens
// with <|vision_bos|><|audio_bos|>; one track alone with its own bos. Feeding text, an image, or
// om_stream_close_media closes the block: the last partial chunk is evaluated and the closing tokens fed.
// All or nothing. Needs a model loaded with its projector.
OM_API om_status om_stream_feed_media(om_stream * stream, const uint8_t * frames, int32_t n_frames, int32_t height,
                                      int32_t width, float fps, const float * pcm, int64_t n_samples);

// Closes the open audio-visual block (no-op without one). A later om_stream_rollback to the point just
// before the closing (the length the stream had before this call) reopens the block as it was, pending
// media included: that is how a question is asked in the middle of a stream and taken back.
OM_API om_status om_stream_close_media(om_stream * stream);

// True while an audio-visual block is open.
OM_API bool om_stream_media_open(const om_stream * stream);

// Feeds a still image (uint8 RGB [height][width][3]) as <|vision_bos|> image tokens <|vision_eos|>, resized
// within Qwen2.5-Omni's image pixel limits. Closes an open audio-visual block first. All or nothing.
OM_API om_status om_stream_feed_image(om_stream * stream, const uint8_t * rgb, int32_t height, int32_t width);

//
// The cache manager: what a stream's memory holds, and the row selection on given arrays
//

typedef struct om_layer_stats {
    int32_t rows[3];        // live rows by om_modality (text, visual, audio)
    int32_t budget[2];      // audio and visual budget; -1: unbounded
    int32_t capacity;       // rows allocated
    int64_t kv_bytes;       // bytes of the live rows (K, V and stored redundancy vectors)
    int64_t n_compactions;  // times this layer was compacted
} om_layer_stats;

typedef struct om_stream_stats {
    int32_t n_layer;
    int32_t n_tokens;            // tokens fed (the sequence length)
    int64_t kv_bytes;            // bytes of the live rows, all layers
    int64_t kv_bytes_allocated;  // bytes reserved for rows, all layers: the memory bound
    int64_t n_compactions;       // compaction passes (each compacts the layers over budget)
    double  t_ingest_s;          // seconds ingesting media and embeddings: encoders, prefill, scoring and
                                 // compaction (text feeds, such as questions and answers, are not counted)
    double  t_score_s;           // seconds computing redundancy, scores and the kept rows (attention received
                                 // comes out of the prefill graph and is counted in ingest only)
    double  t_compact_s;         // seconds gathering the kept rows
} om_stream_stats;

OM_API om_status om_stream_get_stats(const om_stream * stream, om_stream_stats * out_stats);
OM_API om_status om_stream_get_layer_stats(const om_stream * stream, int32_t layer, om_layer_stats * out_stats);

// One row a decoder layer keeps: which token it is, and where and what it was in the stream.
typedef struct om_row_info {
    int32_t token;      // index of the token in the stream (0 = the first token fed)
    int32_t pos[3];     // the M-RoPE position (t, h, w) its key was rotated with
    int32_t modality;   // om_modality
} om_row_info;

// The rows layer `layer` keeps, ascending by token. If capacity is too small, returns
// OM_STATUS_BUFFER_TOO_SMALL with *n_out set and nothing written.
OM_API om_status om_stream_get_layer_rows(const om_stream * stream, int32_t layer, om_row_info * out_rows,
                                          int32_t capacity, int32_t * n_out);

// The parameters the stream was created with (memory.budget is NULL: see om_stream_get_layer_stats).
OM_API om_status om_stream_get_params(const om_stream * stream, om_stream_params * out_params);

// Writes the whole stream to a file: memory rows and their metadata, positions, rollback points, the
// policy's state and an open audio-visual block with its pending media. The file appears only when
// complete. A box can restore the stream after a restart with om_stream_load.
OM_API om_status om_stream_save(const om_stream * stream, const char * path);

// Restores a stream written by om_stream_save, over the same model (and projector, if a media block was
// open). A truncated or corrupted file gives OM_STATUS_BAD_FILE, another model OM_STATUS_MODEL_MISMATCH.
OM_API om_status om_stream_load(om_model * model, const char * path, om_stream ** out_stream);

// Calibration of a budget table (`omnimem calibrate`): while on, every evaluated batch with media adds each
// layer's signals of the method's budget allocation: for audio keys, visual keys and both together, the
// attention entropy of the batch's last 32 queries over those keys (softmax of the head-averaged logits
// restricted to them, in nats) and the redundancy 1 - mean cosine of adjacent tokens of the modality (layer
// inputs). Turning it off discards what was measured.
OM_API om_status om_stream_calibrate(om_stream * stream, bool on);

// The means measured so far: out[n_layer][3][2] = (entropy, redundancy) for audio, visual and both; NaN where
// nothing was measured. n is out's capacity in floats.
OM_API om_status om_stream_get_calibration(const om_stream * stream, float * out, int32_t n);

// Bytes one row of one layer takes with the given stream parameters (K and V, plus the hidden state when
// memory.redundancy is OM_REDUNDANCY_HIDDEN): what a byte budget divides by.
OM_API int64_t om_stream_row_bytes(const om_model * model, const om_stream_params * params);

// Rows per layer a bounded stream with these parameters reserves beyond its budget (memory.n_extra, or its
// default n_batch + 512 when 0).
OM_API int32_t om_stream_extra_rows(const om_stream_params * params);

// One layer's selection on given arrays, running the same native code as a stream's compaction (for tests
// and research). The n rows are in sequence order; the last n_chunk are the chunk just evaluated.
//   hidden:   [n][dim] redundancy vectors (needed by the OMNIMEM policies; else may be NULL)
//   queries:  [n_chunk][n_head][head_dim] the chunk's queries after RoPE; keys: [n][n_head_kv][head_dim]
//             after RoPE (needed by OMNIMEM with lambda > 0 and ATTENTION_TOPK; else may be NULL)
//   modality: [n] om_modality values; history: [n - n_chunk] running importance of the memory rows, or NULL
//   seq:      [n] each row's index in the stream, ascending (what UNIFORM and RANDOM rank rows by), or NULL:
//             0 .. n - 1
//   pos:      [n][3] each row's M-RoPE position (t, h, w) (needed with memory.neighbours FRAME or BOTH; else
//             may be NULL)
// Writes the kept rows' indices, ascending, to out_kept (capacity n) with their count, and each row's
// importance after the running average to out_importance ([n], may be NULL; zeros when not computed).
OM_API om_status om_memory_select(const om_memory_params * params, int32_t n, int32_t n_chunk,
                                  const float * hidden, int32_t dim,
                                  const float * queries, int32_t n_head, const float * keys, int32_t n_head_kv,
                                  int32_t head_dim, const int8_t * modality, const float * history,
                                  const int32_t * seq, const int32_t * pos, int32_t budget_audio,
                                  int32_t budget_visual,
                                  int32_t * out_kept, int32_t * out_n_kept, float * out_importance);

//
// Profiling: where a stream's compute time goes
//

// Per-operation profile (`Stream.profile()`): while on, the stream computes its graphs one node at a time
// and adds each node's time to its operation's total, so that a run shows where its time goes. Each node then
// costs a separate launch (a few microseconds on a CPU; the no-op view nodes, "VIEW", "RESHAPE", "PERMUTE",
// "TRANSPOSE", measure it), so profiled runs are slower than plain ones. Turning it on starts from zero;
// turning it off discards what was measured.
OM_API om_status om_stream_profile(om_stream * stream, bool on);

typedef struct om_op_time {
    char    op[32];      // ggml's name of the operation ("MUL_MAT", "SOFT_MAX"; unary and GLU ops by their
                         // own name, e.g. "SILU", "SWIGLU")
    int64_t n_nodes;     // nodes of this operation computed
    double  seconds;     // their time, each node timed alone (launch included)
    int64_t bytes_read;  // bytes of the operands they read: for MUL_MAT the weights and the activations,
                         // for GET_ROWS the rows picked; not the destination a copy writes into; 0 for views
    int64_t flops;       // floating-point operations of matrix products (MUL_MAT: 2 per multiply-add); 0 for
                         // other operations
    bool    scoring;     // the nodes that measure the attention received for the cache manager, which the
                         // prefill graph computes beside the model: an entry of their own for each operation
} om_op_time;

// What the profile measured since it was turned on, one entry per operation, most time first. If capacity is
// too small, returns OM_STATUS_BUFFER_TOO_SMALL with *n_out set and nothing written. Fails if the profile is off.
OM_API om_status om_stream_get_profile(const om_stream * stream, om_op_time * out, int32_t capacity,
                                       int32_t * n_out);

//
// Sampling (llama.cpp's sampler chain: top-k, top-p, temperature, seeded draw; greedy at temperature 0)
//

typedef struct om_sampler om_sampler;

typedef struct om_sampler_params {
    float    temperature;  // <= 0: greedy (argmax)
    int32_t  top_k;        // <= 0: off
    float    top_p;        // >= 1: off
    uint32_t seed;         // seed of the draw; equal seeds give equal samples
} om_sampler_params;

OM_API void om_sampler_default_params(om_sampler_params * params);

OM_API om_status om_sampler_init(const om_sampler_params * params, om_sampler ** out_sampler);

// NULL is allowed.
OM_API void om_sampler_free(om_sampler * sampler);

// Draws the next token from the stream's last logits. Does not feed it.
OM_API om_status om_sampler_sample(om_sampler * sampler, const om_stream * stream, int32_t * out_token);

//
// Media preprocessing: PCM and RGB frames → the inputs of the audio and vision encoders, numerically as the
// Qwen2.5-Omni processor of transformers computes them. Stateless; callable from any thread.
//

#define OM_AUDIO_SAMPLE_RATE 16000  // om_audio_log_mel's input rate (resample other rates first)
#define OM_AUDIO_N_MEL       128    // mel bins of Qwen2.5-Omni's audio tower
#define OM_IMAGE_PATCH_DIM   1176   // values per vision patch: [3 channels][2 frames][14][14]

// Whisper-style log-mel features of a 16 kHz mono clip: one frame per 160 samples started, i.e.
// *n_frames_out = ceil(n_samples / 160), written as out[n_mel][n_frames] (each bin's time series
// contiguous: ggml's [n_frames, n_mel] conv1d input). The values equal the processor's features at its
// valid frames (it zero-pads clips to 300 s; longer clips are not truncated here). Empty or non-finite PCM
// is refused. out_capacity counts floats; if it is below n_mel·n_frames, returns
// OM_STATUS_BUFFER_TOO_SMALL with *n_frames_out set (out may be NULL to ask).
OM_API om_status om_audio_log_mel(const float * pcm, int64_t n_samples, int32_t n_mel, float * out,
                                  int64_t out_capacity, int64_t * n_frames_out);

// The mel filterbank om_audio_log_mel uses: out[n_mel][201] weights over the power spectrum's bins
// (Slaney scale and area normalisation, 0–8 kHz). out_capacity counts floats.
OM_API om_status om_audio_mel_filters(int32_t n_mel, float * out, int64_t out_capacity);

// The size the vision encoder sees an image of height×width at: both sides multiples of 28, the area
// within [min_pixels, max_pixels] (Qwen2.5-Omni: images 3136..12845056, video frames 100352..602112),
// the aspect ratio kept as closely as possible. Aspect ratios above 200 are refused.
OM_API om_status om_image_smart_resize(int32_t height, int32_t width, int64_t min_pixels, int64_t max_pixels,
                                       int32_t * out_height, int32_t * out_width);

// Vision patches of n_frames RGB frames rgb[n_frames][height][width][3]: each frame resized to
// resized_height×resized_width (multiples of 28; bicubic with antialiasing on reduction, as the
// processor's PIL path) unless already that size, scaled to [0, 1] and CLIP-normalised; frames 2k and
// 2k+1 form temporal patch k (a lone last frame, e.g. a still image, is used twice). Writes
// out[n_patches][OM_IMAGE_PATCH_DIM] in the order (t, h/2, w/2, 2, 2) the ViT expects, and
// grid_thw_out[3] = (t, h, w) in patches, n_patches = t·h·w. Same buffer contract as om_audio_log_mel.
OM_API om_status om_image_patches(const uint8_t * rgb, int32_t n_frames, int32_t height, int32_t width,
                                  int32_t resized_height, int32_t resized_width, float * out,
                                  int64_t out_capacity, int32_t * grid_thw_out);

// The log-mel features of a clip that arrives in pieces (live audio): each frame is computed as soon as the
// samples its 25 ms window covers are in, and memory stays bounded however long the clip runs (the samples
// the next frames need, plus the frames computed and not yet taken). The frames are om_audio_log_mel's over
// the whole clip, however it is cut, except for the 8-decade floor: taking frames applies the loudest frame
// computed so far, so frames taken before a louder passage arrived keep the values the clip's overall
// floor would raise (only in those bins). Taking every frame after finishing gives om_audio_log_mel's
// output exactly. One stream per clip; not to be used from two threads at once.
typedef struct om_log_mel_stream om_log_mel_stream;

OM_API om_status om_log_mel_stream_init(int32_t n_mel, om_log_mel_stream ** out_stream);

// NULL is allowed.
OM_API void om_log_mel_stream_free(om_log_mel_stream * stream);

// Appends n_samples samples of 16 kHz mono PCM (any number, 0 included). Non-finite samples, or pushing
// after om_log_mel_stream_finish, fail and leave the stream as it was.
OM_API om_status om_log_mel_stream_push(om_log_mel_stream * stream, const float * pcm, int64_t n_samples);

// Ends the clip: the last frames, whose windows reach past its end, become ready (seeing silence there, as
// om_audio_log_mel), for ceil(n_samples / 160) frames in all. Calling it again does nothing.
OM_API om_status om_log_mel_stream_finish(om_log_mel_stream * stream);

// Frames ready and not yet taken; samples pushed; frames taken. 0 for NULL.
OM_API int64_t om_log_mel_stream_n_ready(const om_log_mel_stream * stream);
OM_API int64_t om_log_mel_stream_n_samples(const om_log_mel_stream * stream);
OM_API int64_t om_log_mel_stream_n_taken(const om_log_mel_stream * stream);

// Moves the oldest n_frames ready frames into out[n_mel][n_frames] (om_audio_log_mel's layout and
// scaling). n_frames must not exceed om_log_mel_stream_n_ready; out_capacity counts floats, and below
// n_mel·n_frames the call returns OM_STATUS_BUFFER_TOO_SMALL and takes nothing.
OM_API om_status om_log_mel_stream_take(om_log_mel_stream * stream, int64_t n_frames, float * out,
                                        int64_t out_capacity);

#ifdef __cplusplus
}
#endif

#endif // OMNIMEM_H
