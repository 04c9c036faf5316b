#include "stream/stream.h"

#include "media/image-preprocess.h"
#include "model/qwen25-audio.h"
#include "model/qwen25-vision.h"
#include "model/qwen2vl.h"

#include <algorithm>

om_stream::om_stream(om_model & model_, const om_stream_params & params_) : model(model_), params(params_) {
    using namespace om;
    const text_hparams & hp = model.hparams;
    if (params.n_ctx <= 0) {
        params.n_ctx = hp.n_ctx_train;
    }
    if (params.n_batch <= 0) {
        fail(OM_STATUS_INVALID_ARGUMENT, "n_batch must be positive, got %d", params.n_batch);
    }
    if (params.kv_type != OM_KV_TYPE_F16 && params.kv_type != OM_KV_TYPE_F32) {
        fail(OM_STATUS_INVALID_ARGUMENT, "unknown kv_type %d (use OM_KV_TYPE_F16 or OM_KV_TYPE_F32)", int(params.kv_type));
    }
    try {
        backends.push_back(init_backend(model, model.device));
        if (model.device != model.cpu_device) {
            backends.push_back(init_backend(model, model.cpu_device));
        }
        memory = std::make_unique<cache_manager>(hp, params, ggml_backend_dev_buffer_type(model.device));
        params.memory.budget = nullptr;   // copied by the cache manager; the caller's array may go away

        const om::projector * proj = model.projector.get();
        const int32_t audio_layers = proj != nullptr && proj->audio != nullptr ? proj->audio->n_layer : 0;
        const int32_t vision_layers = proj != nullptr && proj->vision != nullptr ? proj->vision->n_layer : 0;
        // a vision block, with its window gathers and rotary embedding, is the largest: about 45 nodes
        graph_size = size_t(std::max({hp.n_layer, audio_layers, vision_layers})) * 64 + 256;
        graph_meta.resize(ggml_tensor_overhead() * graph_size + ggml_graph_overhead_custom(graph_size, false));
        sched = ggml_backend_sched_new(backends.data(), nullptr, int(backends.size()), graph_size, false, true);
        if (sched == nullptr) {
            fail(OM_STATUS_BACKEND_ERROR, "cannot create the ggml scheduler");
        }
    } catch (...) {
        for (ggml_backend_t b : backends) {
            ggml_backend_free(b);
        }
        throw;
    }
}

om_stream::~om_stream() {
    if (sched != nullptr) {
        ggml_backend_sched_free(sched);
    }
    memory.reset();
    for (ggml_backend_t b : backends) {
        ggml_backend_free(b);
    }
}

template <typename Build, typename Read>
void om_stream::compute(Build && build, Read && read) {
    using namespace om;
    ggml_init_params ip = {graph_meta.size(), graph_meta.data(), /*no_alloc=*/true};
    ggml_context * ctx = ggml_init(ip);
    struct ctx_guard {
        ggml_context * c;
        ~ctx_guard() { ggml_free(c); }
    } guard{ctx};
    ggml_cgraph * gf = ggml_new_graph_custom(ctx, graph_size, false);
    auto upload = build(ctx, gf);

    ggml_backend_sched_reset(sched);
    if (!ggml_backend_sched_alloc_graph(sched, gf)) {
        fail(OM_STATUS_BACKEND_ERROR, "cannot allocate compute memory for a graph of %d nodes; use a smaller n_batch",
             ggml_graph_n_nodes(gf));
    }
    upload();
    const ggml_status st = ggml_backend_sched_graph_compute(sched, gf);
    if (st != GGML_STATUS_SUCCESS) {
        fail(OM_STATUS_BACKEND_ERROR, "the ggml backend failed to compute (status %d)", int(st));
    }
    read();
}

om::graph_runner om_stream::runner() {
    return [this](const om::graph_builder & build, const std::function<void()> & read) { compute(build, read); };
}

void om_stream::compact_memory() {
    if (memory->compact(runner())) {
        // rows of earlier tokens are gone: the points before this one can no longer be returned to
        compacted_at = n_tokens;
        forget_boundaries([this](int32_t at) { return at < compacted_at; });
    }
}

void om_stream::eval_batch(const batch & b, const om::score_request & scoring) {
    using namespace om;
    const kv_cache & kv = memory->kv();
    if (!kv.has_room(b.n) && memory->bounded()) {
        compact_memory();   // mid-chunk: make room under the budget with what has been measured so far
    }
    if (!kv.has_room(b.n)) {
        fail(OM_STATUS_CONTEXT_FULL, "the stream memory is full (%d rows in layer 0); %s", kv.capacity(0),
             memory->bounded() ? "text is not compacted: set a text cap, a larger n_extra, or roll back questions"
                               : "create the stream with a larger n_ctx, a budget, or roll back what is no longer "
                                 "needed");
    }
    const bool flash = kv.type() == GGML_TYPE_F16;
    const bool calibrate = calibration && std::any_of(b.modality, b.modality + b.n,
                                                      [](modality m) { return m != modality::text; });
    decoder_graph g;
    compute(
        [&](ggml_context * ctx, ggml_cgraph * gf) {
            g = build_qwen2vl_graph(ctx, gf, model, kv, b.n, b.embeddings != nullptr, flash, scoring, calibrate);
            return [&] { set_qwen2vl_inputs(g, b.tokens, b.embeddings, b.positions); };
        },
        [&] {
            logits.resize(size_t(model.hparams.n_vocab));
            ggml_backend_tensor_get(g.logits, logits.data(), 0, sizeof(float) * logits.size());
            std::vector<float> received;
            for (int32_t il = 0; il < int32_t(g.received.size()); ++il) {
                if (ggml_tensor * t = g.received[size_t(il)]) {
                    received.resize(size_t(ggml_nelements(t)));
                    ggml_backend_tensor_get(t, received.data(), 0, ggml_nbytes(t));
                    memory->add_received(il, received.data(), int32_t(received.size()));
                }
            }
            if (calibrate) {
                read_calibration(g, b);
            }
        });

    std::vector<row_meta> added(static_cast<size_t>(b.n));
    for (int32_t i = 0; i < b.n; ++i) {
        const int32_t * p = b.positions + size_t(i) * 3;
        added[size_t(i)] = {n_tokens + i, {p[0], p[1], p[2]}, b.modality[i]};
        next_pos = std::max(next_pos, 1 + std::max({p[0], p[1], p[2]}));
    }
    memory->commit(added);
    n_tokens += b.n;
}

void om_stream::feed(const batch & all, bool compact) {
    const int32_t n_tokens_before = n_tokens, next_pos_before = next_pos;
    int64_t n_audio = 0, n_visual = 0;
    for (int32_t i = 0; i < all.n; ++i) {
        n_audio += all.modality[i] == om::modality::audio;
        n_visual += all.modality[i] == om::modality::visual;
    }
    compact = compact && n_audio + n_visual > 0 && memory->bounded();
    const om::score_request scoring = compact ? memory->to_score(n_audio, n_visual) : om::score_request{};
    try {
        for (int32_t start = 0; start < all.n; start += params.n_batch) {
            batch b = all;
            b.n = std::min(params.n_batch, all.n - start);
            b.tokens = all.tokens != nullptr ? all.tokens + start : nullptr;
            b.embeddings = all.embeddings != nullptr ? all.embeddings + size_t(start) * size_t(model.hparams.n_embd)
                                                     : nullptr;
            b.positions = all.positions + size_t(start) * 3;
            b.modality = all.modality + start;
            eval_batch(b, scoring);
        }
        boundaries.emplace_back(n_tokens, next_pos);
        if (compact) {
            compact_memory();
        }
    } catch (...) {
        restore(n_tokens_before, next_pos_before);
        throw;
    }
}

void om_stream::forget_boundaries(const std::function<bool(int32_t)> & gone) {
    boundaries.erase(std::remove_if(boundaries.begin(), boundaries.end(),
                                    [&](const std::pair<int32_t, int32_t> & b) { return gone(b.first); }),
                     boundaries.end());
}

void om_stream::restore(int32_t n_tokens_before, int32_t next_pos_before) {
    memory->drop_from(n_tokens_before);
    forget_boundaries([&](int32_t at) { return at > n_tokens_before; });
    compacted_at = std::min(compacted_at, n_tokens_before);   // rows a compaction evicted stay evicted
    n_tokens = n_tokens_before;
    next_pos = next_pos_before;
    logits.clear();
}

void om_stream::feed_tokens(const int32_t * tokens, int32_t n) {
    using namespace om;
    if (n <= 0 || tokens == nullptr) {
        fail(OM_STATUS_INVALID_ARGUMENT, "feed_tokens needs at least one token");
    }
    for (int32_t i = 0; i < n; ++i) {
        if (tokens[i] < 0 || tokens[i] >= model.hparams.n_vocab) {
            fail(OM_STATUS_INVALID_ARGUMENT, "token id %d at index %d is outside the vocabulary [0, %d)", tokens[i], i,
                 model.hparams.n_vocab);
        }
    }
    close_media();  // text after media closes the block, as the model's prompts do
    std::vector<int32_t> positions(size_t(n) * 3);
    for (int32_t i = 0; i < n; ++i) {
        std::fill_n(positions.begin() + i * 3, 3, next_pos + i);  // text: the same position on every axis
    }
    const std::vector<modality> text(size_t(n), modality::text);
    feed({tokens, nullptr, positions.data(), text.data(), n}, false);
}

void om_stream::feed_embeddings(const float * embeddings, const int32_t * positions, const om::modality * mods,
                                int32_t n) {
    using namespace om;
    ingest_timer timer(*this);
    if (n <= 0 || embeddings == nullptr || positions == nullptr) {
        fail(OM_STATUS_INVALID_ARGUMENT, "feed_embeddings needs at least one embedding and its positions");
    }
    for (int32_t i = 0; i < n * 3; ++i) {
        if (positions[i] < 0) {
            fail(OM_STATUS_INVALID_ARGUMENT, "position %d of input %d is negative", positions[i], i / 3);
        }
    }
    const std::vector<modality> text(size_t(n), modality::text);
    feed({nullptr, embeddings, positions, mods != nullptr ? mods : text.data(), n}, true);
}

int32_t om_stream::count_audio_tokens(int32_t n_mel, int32_t n_frames) const {
    using namespace om;
    const audio_tower * a = model.projector != nullptr ? model.projector->audio.get() : nullptr;
    if (a == nullptr) {
        fail(OM_STATUS_INVALID_ARGUMENT, "no audio encoder is loaded: load the model with its projector file "
             "(mmproj=...) converted with `omnimem convert --mmproj`");
    }
    if (n_mel != a->n_mel) {
        fail(OM_STATUS_INVALID_ARGUMENT, "the audio tower expects %d mel bins, got %d", a->n_mel, n_mel);
    }
    const int32_t chunk = 2 * a->n_window;
    return (n_frames / chunk) * audio_chunk_tokens(chunk) + audio_chunk_tokens(n_frames % chunk);
}

void om_stream::encode_audio(const float * mel, int32_t n_frames, float * out) {
    using namespace om;
    const audio_tower & a = *model.projector->audio;
    const std::vector<int32_t> shape = {a.n_mel, n_frames};
    const size_t n_in = size_t(a.n_mel) * size_t(n_frames);
    const size_t n_out_all = size_t(count_audio_tokens(a.n_mel, n_frames)) * size_t(a.n_out);
    if (model.audio_cache->find(shape, mel, n_in, out, n_out_all)) {
        return;
    }
    float * const out_all = out;
    const int32_t chunk = 2 * a.n_window;
    std::vector<float> part;
    for (int32_t f0 = 0; f0 < n_frames; f0 += chunk) {
        const int32_t n = std::min(chunk, n_frames - f0);
        const int32_t n_out = audio_chunk_tokens(n);
        if (n_out == 0) {
            break;   // a last piece of one or two frames pools to nothing
        }
        part.resize(size_t(n) * size_t(a.n_mel));
        for (int32_t m = 0; m < a.n_mel; ++m) {
            std::copy_n(mel + size_t(m) * size_t(n_frames) + size_t(f0), n, part.begin() + size_t(m) * size_t(n));
        }
        audio_graph g;
        compute(
            [&](ggml_context * ctx, ggml_cgraph * gf) {
                g = build_audio_graph(ctx, gf, a, n);
                return [&] { ggml_backend_tensor_set(g.mel, part.data(), 0, ggml_nbytes(g.mel)); };
            },
            [&] { ggml_backend_tensor_get(g.out, out, 0, ggml_nbytes(g.out)); });
        out += size_t(n_out) * size_t(a.n_out);
    }
    model.audio_cache->store(shape, mel, n_in, out_all, n_out_all);
}

int32_t om_stream::count_image_tokens(int32_t n_patches, const int32_t grid_thw[3]) const {
    using namespace om;
    const vision_tower * v = model.projector != nullptr ? model.projector->vision.get() : nullptr;
    if (v == nullptr) {
        fail(OM_STATUS_INVALID_ARGUMENT, "no vision encoder is loaded: load the model with its projector file "
             "(mmproj=...) converted with `omnimem convert --mmproj`");
    }
    const int32_t t = grid_thw[0], h = grid_thw[1], w = grid_thw[2], m = v->merge;
    if (t <= 0 || h <= 0 || w <= 0 || h % m != 0 || w % m != 0) {
        fail(OM_STATUS_INVALID_ARGUMENT, "the patch grid (t, h, w) = (%d, %d, %d) is not one the vision encoder "
             "merges: all must be positive, h and w multiples of %d", t, h, w, m);
    }
    const int64_t n = int64_t(t) * h * w;
    if (n != n_patches) {
        fail(OM_STATUS_INVALID_ARGUMENT, "the patch grid (%d, %d, %d) holds %lld patches, but %d were given", t, h, w,
             (long long) n, n_patches);
    }
    return int32_t(n / (m * m));
}

void om_stream::encode_image(const float * patches, const int32_t grid_thw[3], float * out) {
    using namespace om;
    const vision_tower & v = *model.projector->vision;
    const std::vector<int32_t> shape(grid_thw, grid_thw + 3);
    const size_t n_in = size_t(grid_thw[0]) * size_t(grid_thw[1]) * size_t(grid_thw[2]) * k_vit_patch_dim;
    const size_t n_out = size_t(count_image_tokens(int32_t(n_in / k_vit_patch_dim), grid_thw)) * size_t(v.n_out);
    if (model.vision_cache->find(shape, patches, n_in, out, n_out)) {
        return;
    }
    const vision_layout layout = plan_vision_layout(v, grid_thw[0], grid_thw[1], grid_thw[2]);
    vision_graph g;
    compute(
        [&](ggml_context * ctx, ggml_cgraph * gf) {
            g = build_vision_graph(ctx, gf, v, layout);
            return [&] { set_vision_inputs(g, layout, patches); };
        },
        [&] { ggml_backend_tensor_get(g.out, out, 0, ggml_nbytes(g.out)); });
    model.vision_cache->store(shape, patches, n_in, out, n_out);
}

void om_stream::rollback(int32_t n) {
    using namespace om;
    if (n == n_tokens) {
        return;
    }
    if (n < 0 || n > n_tokens) {
        fail(OM_STATUS_INVALID_ARGUMENT, "cannot roll back to %d tokens: the stream has %d", n, n_tokens);
    }
    if (n > 0 && n < compacted_at) {
        fail(OM_STATUS_INVALID_ARGUMENT, "cannot roll back to %d tokens: the memory was compacted at %d, which "
             "fixed everything before it; roll back to %d or later, or to 0 to start over", n, compacted_at,
             compacted_at);
    }
    int32_t pos = -1;
    if (n == 0) {
        pos = 0;
    } else {
        for (const auto & b : boundaries) {
            if (b.first == n) {
                pos = b.second;
            }
        }
    }
    if (pos < 0) {
        fail(OM_STATUS_INVALID_ARGUMENT, "cannot roll back to %d tokens: that is not the end of an earlier feed", n);
    }
    if (block && n > block_opened_at) {
        fail(OM_STATUS_INVALID_ARGUMENT, "cannot roll back to %d tokens: that is inside the open audio-visual block "
             "(opened at %d); roll back before it, or close it first", n, block_opened_at);
    }
    block.reset();
    if (reopen_block && n == reopen_at) {
        block = std::make_unique<om::media_block>(*reopen_block);
        block_opened_at = reopen_opened_at;
    } else if (n < reopen_at) {
        reopen_block.reset();
    }
    memory->drop_from(n);
    if (n < compacted_at) {
        compacted_at = 0;
    }
    forget_boundaries([n](int32_t at) { return at > n; });
    n_tokens = n;
    next_pos = pos;
    logits.clear();
}

void om_stream::read_calibration(const om::decoder_graph & g, const batch & b) {
    using namespace om;
    std::vector<float> logits, inputs;
    std::vector<modality> key_mod;
    for (int32_t il = 0; il < memory->kv().n_layer(); ++il) {
        ggml_tensor * l = g.calib_logits[size_t(il)];
        ggml_tensor * x = g.calib_inputs[size_t(il)];
        logits.resize(size_t(ggml_nelements(l)));
        inputs.resize(size_t(ggml_nelements(x)));
        ggml_backend_tensor_get(l, logits.data(), 0, ggml_nbytes(l));
        ggml_backend_tensor_get(x, inputs.data(), 0, ggml_nbytes(x));
        key_mod.clear();
        for (const row_meta & r : memory->kv().rows(il)) {
            key_mod.push_back(r.mod);
        }
        key_mod.insert(key_mod.end(), b.modality, b.modality + b.n);
        calibration->add(il, logits.data(), int32_t(l->ne[1]), int32_t(l->ne[0]), key_mod.data(), inputs.data(), b.n,
                         int32_t(x->ne[0]));
    }
}

void om_stream::set_calibration(bool on) {
    if (!on) {
        calibration.reset();
    } else if (!calibration) {
        calibration = std::make_unique<om::calibration>(model.hparams.n_layer);
    }
}

std::vector<float> om_stream::calibration_means() const {
    if (!calibration) {
        om::fail(OM_STATUS_INVALID_ARGUMENT, "the stream is not calibrating: call om_stream_calibrate(stream, true) "
                 "before feeding the calibration media");
    }
    return calibration->means();
}

void om_stream::set_profile(bool on) {
    if (!on) {
        om::op_profile::detach(sched);
        profile.reset();
        return;
    }
    profile = std::make_unique<om::op_profile>();   // on again: from zero
    profile->attach(sched);
}

std::vector<om_op_time> om_stream::profile_totals() const {
    if (!profile) {
        om::fail(OM_STATUS_INVALID_ARGUMENT, "the stream is not profiling: call om_stream_profile(stream, true) "
                 "before the work to profile");
    }
    return profile->totals();
}

void om_stream::get_stats(om_stream_stats & out) const {
    const om::kv_cache & kv = memory->kv();
    out = om_stream_stats{};
    out.n_layer = kv.n_layer();
    out.n_tokens = n_tokens;
    out.kv_bytes_allocated = int64_t(kv.bytes());
    for (int32_t il = 0; il < kv.n_layer(); ++il) {
        out.kv_bytes += int64_t(kv.n_rows(il)) * int64_t(kv.row_bytes(il));
    }
    out.n_compactions = memory->compactions();
    out.t_ingest_s = t_ingest;
    out.t_score_s = memory->score_seconds();
    out.t_compact_s = memory->compact_seconds();
}

void om_stream::get_layer_stats(int32_t il, om_layer_stats & out) const {
    const om::kv_cache & kv = memory->kv();
    if (il < 0 || il >= kv.n_layer()) {
        om::fail(OM_STATUS_INVALID_ARGUMENT, "layer %d is outside [0, %d)", il, kv.n_layer());
    }
    out = om_layer_stats{};
    for (const om::row_meta & r : kv.rows(il)) {
        out.rows[int(r.mod)] += 1;
    }
    out.budget[0] = memory->budget_audio(il);
    out.budget[1] = memory->budget_visual(il);
    out.capacity = kv.capacity(il);
    out.kv_bytes = int64_t(kv.n_rows(il)) * int64_t(kv.row_bytes(il));
    out.n_compactions = memory->compactions(il);
}
