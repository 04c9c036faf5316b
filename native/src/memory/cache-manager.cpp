#include "memory/cache-manager.h"

#include "common.h"
#include "memory/policy.h"
#include "memory/scoring.h"
#include "serialize.h"

#include <algorithm>
#include <chrono>
#include <numeric>

namespace om {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace

cache_manager::cache_manager(const text_hparams & hp, const om_stream_params & params,
                             ggml_backend_buffer_type_t buft)
    : params_(params.memory), layer_compactions_(size_t(hp.n_layer), 0) {
    check_memory_params(params_);
    std::vector<int32_t> capacity(size_t(hp.n_layer), params.n_ctx);
    if (params_.policy != OM_POLICY_FULL) {
        if (params_.budget == nullptr) {
            fail(OM_STATUS_INVALID_ARGUMENT, "the memory policy %d needs a budget (audio and visual rows per layer)",
                 int(params_.policy));
        }
        const int32_t extra = extra_rows(params);
        budget_.assign(params_.budget, params_.budget + size_t(hp.n_layer) * 2);
        for (int32_t il = 0; il < hp.n_layer; ++il) {
            const int32_t a = budget_[size_t(il) * 2], v = budget_[size_t(il) * 2 + 1];
            if (a < 0 || v < 0 || int64_t(a) + v + extra > INT32_MAX) {
                fail(OM_STATUS_INVALID_ARGUMENT, "the budget of layer %d (audio %d, visual %d) is out of range", il, a, v);
            }
            capacity[size_t(il)] = a + v + extra;
        }
    }
    params_.budget = nullptr;   // the caller's array need not outlive init
    const ggml_type type = params.kv_type == OM_KV_TYPE_F16 ? GGML_TYPE_F16 : GGML_TYPE_F32;
    kv_ = std::make_unique<kv_cache>(hp, capacity, type, stores_hidden(params_), buft);
    received_.resize(size_t(hp.n_layer));
}

void cache_manager::commit(const std::vector<row_meta> & added) {
    kv_->commit(added);
    for (const row_meta & r : added) {
        if (r.mod != modality::text && first_media_seq_ < 0) {
            first_media_seq_ = r.seq;
        }
    }
}

void cache_manager::drop_from(int32_t n_tokens) {
    kv_->drop_from(n_tokens);
    if (first_media_seq_ >= n_tokens) {
        first_media_seq_ = -1;
    }
    for (auto & r : received_) {
        r.clear();
    }
}

score_request cache_manager::to_score(int64_t n_audio, int64_t n_visual) const {
    score_request request;
    if (!bounded() || !policy_needs_importance(params_) || n_audio + n_visual == 0) {
        return request;
    }
    request.n_queries = params_.n_score_queries;
    std::vector<bool> & layers = request.layers;
    layers.assign(size_t(kv_->n_layer()), false);
    for (int32_t il = 0; il < kv_->n_layer(); ++il) {
        int64_t a = n_audio, v = n_visual;
        for (const row_meta & r : kv_->rows(il)) {
            a += r.mod == modality::audio;
            v += r.mod == modality::visual;
        }
        layers[size_t(il)] = over_budget(params_, a, v, budget_audio(il), budget_visual(il));
    }
    return request;
}

void cache_manager::add_received(int32_t il, const float * received, int32_t n) {
    std::vector<float> & acc = received_[size_t(il)];
    if (int32_t(acc.size()) < n) {
        acc.resize(size_t(n), 0.0f);
    }
    for (int32_t j = 0; j < n; ++j) {
        acc[size_t(j)] += received[j];
    }
}

namespace {

// Whether the cosine of a pair of rows is still the one a row holds from an earlier compaction: stored rows never
// change, so it holds while the same row follows (sequence pairs: until another row comes next; frame pairs:
// as long as the row at the patch next is the one measured).
bool cosine_known(const std::vector<row_meta> & rows, int32_t first, int32_t second, bool across_frames) {
    const row_meta & r = rows[size_t(first)];
    return across_frames ? r.patch_next_seq == rows[size_t(second)].seq : r.next_cos_known;
}

} // namespace

std::vector<cache_manager::layer_neighbours> cache_manager::neighbour_cosines(const graph_runner & run,
                                                                            const std::vector<bool> & layers) {
    const size_t n_layer = layers.size();
    std::vector<layer_neighbours> out(n_layer);
    // only the pairs new since their cosine was measured: the chunk's, and those across the gaps the last
    // compaction left
    std::vector<std::vector<int32_t>> unknown(n_layer), first(n_layer), second(n_layer);
    bool any = false;
    for (size_t il = 0; il < n_layer; ++il) {
        const std::vector<row_meta> & rows = kv_->rows(int32_t(il));
        if (!layers[il]) {
            continue;
        }
        const int32_t n = int32_t(rows.size());
        std::vector<modality> mods(static_cast<size_t>(n));
        std::vector<int32_t> pos(size_t(n) * 3);
        for (int32_t j = 0; j < n; ++j) {
            mods[size_t(j)] = rows[size_t(j)].mod;
            std::copy(rows[size_t(j)].pos, rows[size_t(j)].pos + 3, pos.begin() + 3 * size_t(j));
        }
        neighbour_pairs & pairs = out[il].pairs;
        pairs = find_neighbour_pairs(params_.neighbours, mods.data(), pos.data(), n);
        out[il].cos.resize(pairs.first.size());
        for (size_t i = 0; i < pairs.first.size(); ++i) {
            const row_meta & r = rows[size_t(pairs.first[i])];
            if (cosine_known(rows, pairs.first[i], pairs.second[i], pairs.across_frames[i])) {
                out[il].cos[i] = pairs.across_frames[i] ? r.patch_next_cos : r.next_cos;
            } else {
                unknown[il].push_back(int32_t(i));
                first[il].push_back(pairs.first[i]);
                second[il].push_back(pairs.second[i]);
            }
        }
        any = any || !unknown[il].empty();
    }
    if (!any) {
        return out;
    }
    std::vector<ggml_tensor *> first_in(n_layer, nullptr), second_in(n_layer, nullptr), cos(n_layer, nullptr);
    run(
        [&](ggml_context * ctx, ggml_cgraph * gf) {
            for (size_t il = 0; il < n_layer; ++il) {
                if (unknown[il].empty()) {
                    continue;
                }
                ggml_tensor * store = kv_->hidden(int32_t(il)) != nullptr ? kv_->hidden(int32_t(il))
                                                                          : kv_->v(int32_t(il));
                const int64_t m = int64_t(unknown[il].size());
                first_in[il] = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, m);
                second_in[il] = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, m);
                ggml_set_input(first_in[il]);
                ggml_set_input(second_in[il]);
                cos[il] = om::row_pair_cosines(ctx, store, first_in[il], second_in[il]);
                ggml_set_output(cos[il]);
                ggml_build_forward_expand(gf, cos[il]);
            }
            return [&] {
                for (size_t il = 0; il < n_layer; ++il) {
                    if (cos[il] != nullptr) {
                        const size_t bytes = sizeof(int32_t) * unknown[il].size();
                        ggml_backend_tensor_set(first_in[il], first[il].data(), 0, bytes);
                        ggml_backend_tensor_set(second_in[il], second[il].data(), 0, bytes);
                    }
                }
            };
        },
        [&] {
            std::vector<float> measured;
            for (size_t il = 0; il < n_layer; ++il) {
                if (cos[il] == nullptr) {
                    continue;
                }
                measured.resize(unknown[il].size());
                ggml_backend_tensor_get(cos[il], measured.data(), 0, ggml_nbytes(cos[il]));
                std::vector<row_meta> & rows = kv_->rows(int32_t(il));
                const neighbour_pairs & pairs = out[il].pairs;
                for (size_t u = 0; u < measured.size(); ++u) {
                    const size_t i = size_t(unknown[il][u]);
                    row_meta & r = rows[size_t(pairs.first[i])];
                    if (pairs.across_frames[i]) {
                        r.patch_next_seq = rows[size_t(pairs.second[i])].seq;
                        r.patch_next_cos = measured[u];
                    } else {
                        r.next_cos_known = true;
                        r.next_cos = measured[u];
                    }
                    out[il].cos[i] = measured[u];
                }
            }
        });
    return out;
}

std::vector<int32_t> cache_manager::select_layer(int32_t il, const layer_neighbours & neighbours) {
    std::vector<row_meta> & rows = kv_->rows(il);
    const int32_t n = int32_t(rows.size());
    std::vector<float> received = std::move(received_[size_t(il)]);
    received_[size_t(il)].clear();
    if (!received.empty()) {
        received.resize(size_t(n), 0.0f);
        for (int32_t j = 0; j < n; ++j) {   // the running average across chunks (method §3.1)
            row_meta & r = rows[size_t(j)];
            r.importance = r.scored ? 0.5f * (r.importance + received[size_t(j)]) : received[size_t(j)];
            r.scored = true;
        }
    }
    std::vector<modality> mods(static_cast<size_t>(n));
    std::vector<float> importance(static_cast<size_t>(n));
    std::vector<int32_t> seq(static_cast<size_t>(n));
    for (int32_t j = 0; j < n; ++j) {
        mods[size_t(j)] = rows[size_t(j)].mod;
        importance[size_t(j)] = rows[size_t(j)].importance;
        seq[size_t(j)] = rows[size_t(j)].seq;
    }
    selection_input in;
    in.mod = mods.data();
    in.n = n;
    in.importance = importance.data();
    if (!neighbours.pairs.before.empty()) {   // measured: a policy that scores redundancy
        in.pairs = &neighbours.pairs;
        in.pair_cos = neighbours.cos.data();
    }
    in.seq = seq.data();
    in.budget_audio = budget_audio(il);
    in.budget_visual = budget_visual(il);
    std::vector<int32_t> kept = select_rows(params_, in);
    apply_text_cap(il, kept);
    return kept;
}

void cache_manager::apply_text_cap(int32_t il, std::vector<int32_t> & kept) const {
    if (params_.text_cap <= 0 || first_media_seq_ < 0) {
        return;
    }
    const std::vector<row_meta> & rows = kv_->rows(il);
    int64_t capped = 0;
    for (int32_t j : kept) {
        capped += rows[size_t(j)].mod == modality::text && rows[size_t(j)].seq > first_media_seq_;
    }
    int64_t excess = capped - params_.text_cap;
    if (excess <= 0) {
        return;
    }
    // kept is ascending, so the first capped text rows met are the oldest
    std::vector<int32_t> out;
    out.reserve(kept.size());
    for (int32_t j : kept) {
        const row_meta & r = rows[size_t(j)];
        if (excess > 0 && r.mod == modality::text && r.seq > first_media_seq_) {
            --excess;
            continue;
        }
        out.push_back(j);
    }
    kept = std::move(out);
}

bool cache_manager::compact(const graph_runner & run) {
    if (!bounded()) {
        return false;
    }
    const auto t0 = std::chrono::steady_clock::now();
    const int32_t n_layer = kv_->n_layer();
    std::vector<bool> over(size_t(n_layer), false);
    for (int32_t il = 0; il < n_layer; ++il) {
        int64_t a = 0, v = 0, text = 0;
        for (const row_meta & r : kv_->rows(il)) {
            a += r.mod == modality::audio;
            v += r.mod == modality::visual;
            text += r.mod == modality::text && first_media_seq_ >= 0 && r.seq > first_media_seq_;
        }
        over[size_t(il)] = over_budget(params_, a, v, budget_audio(il), budget_visual(il)) ||
                           (params_.text_cap > 0 && text > params_.text_cap);
    }
    std::vector<layer_neighbours> neighbours(static_cast<size_t>(n_layer));
    if (policy_needs_redundancy(params_) && std::find(over.begin(), over.end(), true) != over.end()) {
        neighbours = neighbour_cosines(run, over);
    }
    std::vector<std::vector<int32_t>> kept(static_cast<size_t>(n_layer));
    bool any = false;
    for (int32_t il = 0; il < n_layer; ++il) {
        if (over[size_t(il)]) {
            kept[size_t(il)] = select_layer(il, neighbours[size_t(il)]);
        } else {
            kept[size_t(il)].resize(size_t(kv_->n_rows(il)));
            std::iota(kept[size_t(il)].begin(), kept[size_t(il)].end(), 0);
        }
        any = any || int32_t(kept[size_t(il)].size()) < kv_->n_rows(il);
        received_[size_t(il)].clear();
    }
    t_score_ += seconds_since(t0);
    if (!any) {
        return false;
    }

    const auto t1 = std::chrono::steady_clock::now();
    std::vector<int32_t> changed;
    bool moves = false;   // layers emptied entirely need no gather
    for (int32_t il = 0; il < n_layer; ++il) {
        if (int32_t(kept[size_t(il)].size()) < kv_->n_rows(il)) {
            changed.push_back(il);
            moves = moves || !kept[size_t(il)].empty();
        }
    }
    if (moves && kv_->on_host()) {
        kv_->gather_in_place(kept);
    } else if (moves) {
        kv_cache::gather_inputs in;
        run(
            [&](ggml_context * ctx, ggml_cgraph * gf) {
                in = kv_->build_gather(ctx, gf, kept);
                return [&] {
                    for (size_t i = 0; i < in.layers.size(); ++i) {
                        const std::vector<int32_t> & idx = kept[size_t(in.layers[i])];
                        ggml_backend_tensor_set(in.kept[i], idx.data(), 0, sizeof(int32_t) * idx.size());
                    }
                };
            },
            [] {});
    }
    for (int32_t il : changed) {
        kv_->keep_rows(il, kept[size_t(il)]);
        layer_compactions_[size_t(il)] += 1;
    }
    compactions_ += 1;
    t_compact_ += seconds_since(t1);
    return true;
}

void cache_manager::save(byte_writer & w) const {
    for (int32_t il = 0; il < kv_->n_layer(); ++il) {
        const std::vector<row_meta> & rows = kv_->rows(il);
        w.vector(rows);
        w.value(layer_compactions_[size_t(il)]);
        std::vector<uint8_t> data;
        for (ggml_tensor * store : {kv_->k(il), kv_->v(il), kv_->hidden(il)}) {
            if (store != nullptr) {
                data.resize(store->nb[1] * rows.size());
                ggml_backend_tensor_get(store, data.data(), 0, data.size());
                w.bytes(data.data(), data.size());
            }
        }
    }
    w.value(first_media_seq_);
    w.value(compactions_);
    w.value(t_score_);
    w.value(t_compact_);
}

void cache_manager::load(byte_reader & r) {
    for (int32_t il = 0; il < kv_->n_layer(); ++il) {
        std::vector<row_meta> rows = r.vector<row_meta>(uint64_t(kv_->capacity(il)));
        layer_compactions_[size_t(il)] = r.value<int64_t>();
        std::vector<uint8_t> data;
        for (ggml_tensor * store : {kv_->k(il), kv_->v(il), kv_->hidden(il)}) {
            if (store != nullptr) {
                data.resize(store->nb[1] * rows.size());
                r.bytes(data.data(), data.size());
                ggml_backend_tensor_set(store, data.data(), 0, data.size());
            }
        }
        kv_->rows(il) = std::move(rows);
    }
    first_media_seq_ = r.value<int32_t>();
    compactions_ = r.value<int64_t>();
    t_score_ = r.value<double>();
    t_compact_ = r.value<double>();
}

} // namespace om
