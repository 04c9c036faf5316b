// C API of the cache manager: stream statistics, parameters, saving and restoring, row sizes, and one layer's
// selection on given arrays.
#include "api-guard.h"
#include "memory/policy.h"
#include "memory/scoring.h"
#include "stream/stream.h"

#include "ggml-backend.h"
#include "ggml-cpu.h"

#include <algorithm>
#include <limits>
#include <vector>

using namespace om;

om_status om_stream_get_stats(const om_stream * stream, om_stream_stats * out_stats) {
    return guarded([&] {
        require(stream != nullptr && out_stats != nullptr, "stream and out_stats must not be NULL");
        stream->get_stats(*out_stats);
    });
}

om_status om_stream_get_layer_stats(const om_stream * stream, int32_t layer, om_layer_stats * out_stats) {
    return guarded([&] {
        require(stream != nullptr && out_stats != nullptr, "stream and out_stats must not be NULL");
        stream->get_layer_stats(layer, *out_stats);
    });
}

om_status om_stream_get_layer_rows(const om_stream * stream, int32_t layer, om_row_info * out_rows, int32_t capacity,
                                   int32_t * n_out) {
    return guarded([&] {
        require(stream != nullptr && n_out != nullptr, "stream and n_out must not be NULL");
        const kv_cache & kv = stream->memory->kv();
        require(layer >= 0 && layer < kv.n_layer(), "layer is out of range");
        const std::vector<row_meta> & rows = kv.rows(layer);
        *n_out = int32_t(rows.size());
        if (capacity < int32_t(rows.size()) || (out_rows == nullptr && !rows.empty())) {
            fail(OM_STATUS_BUFFER_TOO_SMALL, "layer %d keeps %zu rows; the buffer holds %d", layer, rows.size(),
                 capacity);
        }
        for (size_t j = 0; j < rows.size(); ++j) {
            out_rows[j] = {rows[j].seq, {rows[j].pos[0], rows[j].pos[1], rows[j].pos[2]}, int32_t(rows[j].mod)};
        }
    });
}

om_status om_stream_get_params(const om_stream * stream, om_stream_params * out_params) {
    return guarded([&] {
        require(stream != nullptr && out_params != nullptr, "stream and out_params must not be NULL");
        *out_params = stream->params;
    });
}

om_status om_stream_save(const om_stream * stream, const char * path) {
    return guarded([&] {
        require(stream != nullptr && path != nullptr, "stream and path must not be NULL");
        stream->save(path);
    });
}

om_status om_stream_load(om_model * model, const char * path, om_stream ** out_stream) {
    if (out_stream != nullptr) {
        *out_stream = nullptr;
    }
    return guarded([&] {
        require(model != nullptr && path != nullptr && out_stream != nullptr,
                "model, path and out_stream must not be NULL");
        *out_stream = om_stream::load(*model, path).release();
    });
}

om_status om_stream_calibrate(om_stream * stream, bool on) {
    return guarded([&] {
        require(stream != nullptr, "stream is NULL");
        stream->set_calibration(on);
    });
}

om_status om_stream_get_calibration(const om_stream * stream, float * out, int32_t n) {
    return guarded([&] {
        require(stream != nullptr && out != nullptr, "stream and out must not be NULL");
        const std::vector<float> means = stream->calibration_means();
        if (n < int32_t(means.size())) {
            fail(OM_STATUS_BUFFER_TOO_SMALL, "the calibration needs %zu floats, the buffer holds %d", means.size(), n);
        }
        std::copy(means.begin(), means.end(), out);
    });
}

int32_t om_stream_extra_rows(const om_stream_params * params) {
    return params != nullptr ? extra_rows(*params) : 0;
}

int64_t om_stream_row_bytes(const om_model * model, const om_stream_params * params) {
    if (model == nullptr || params == nullptr) {
        return 0;
    }
    const ggml_type type = params->kv_type == OM_KV_TYPE_F32 ? GGML_TYPE_F32 : GGML_TYPE_F16;
    int64_t bytes = 2 * int64_t(ggml_row_size(type, model->hparams.n_embd_kv()));
    if (stores_hidden(params->memory)) {
        bytes += int64_t(ggml_row_size(type, model->hparams.n_embd));
    }
    return bytes;
}

namespace {

// The attention received (from the last n_chunk rows' queries, causally, n_queries of them as a stream measures
// it) and the cosines of the redundancy vectors' neighbour pairs (pairs: NULL for none), computed on the CPU
// backend with the same graph pieces a stream uses.
struct measured {
    std::vector<float> received, cosines;
};

measured measure(int32_t n, int32_t n_chunk, const float * hidden, int32_t dim, const neighbour_pairs * pairs,
                 const float * queries, int32_t n_head, const float * keys, int32_t n_head_kv, int32_t head_dim,
                 int32_t n_queries) {
    measured out;
    const bool attention = queries != nullptr && n_chunk > 0;
    const bool redundancy = hidden != nullptr && pairs != nullptr && !pairs->first.empty();
    if (!attention && !redundancy) {
        return out;
    }
    ggml_init_params ip = {ggml_tensor_overhead() * 64 + ggml_graph_overhead(), nullptr, /*no_alloc=*/true};
    ggml_context * ctx = ggml_init(ip);
    ggml_backend_t cpu = ggml_backend_cpu_init();
    ggml_backend_buffer_t buffer = nullptr;
    struct cleanup {
        ggml_context * ctx; ggml_backend_t cpu; ggml_backend_buffer_t * buffer;
        ~cleanup() {
            ggml_backend_buffer_free(*buffer);
            ggml_backend_free(cpu);
            ggml_free(ctx);
        }
    } guard{ctx, cpu, &buffer};

    ggml_cgraph * gf = ggml_new_graph(ctx);
    ggml_tensor *q = nullptr, *k = nullptr, *mask = nullptr, *h = nullptr, *received = nullptr, *cosines = nullptr;
    ggml_tensor *first = nullptr, *second = nullptr;
    if (attention) {
        q = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, head_dim, n_head, n_chunk);
        k = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, int64_t(head_dim) * n_head_kv, n);
        mask = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n, n_chunk);
        received = attention_received(ctx, q, k, mask, n_head_kv, n_queries);
        ggml_build_forward_expand(gf, received);
    }
    if (redundancy) {
        h = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, dim, n);
        first = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, int64_t(pairs->first.size()));
        second = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, int64_t(pairs->second.size()));
        cosines = row_pair_cosines(ctx, h, first, second);
        ggml_build_forward_expand(gf, cosines);
    }
    buffer = ggml_backend_alloc_ctx_tensors(ctx, cpu);
    if (buffer == nullptr) {
        fail(OM_STATUS_BACKEND_ERROR, "cannot allocate memory to score %d rows", n);
    }
    if (attention) {
        ggml_backend_tensor_set(q, queries, 0, ggml_nbytes(q));
        ggml_backend_tensor_set(k, keys, 0, ggml_nbytes(k));
        std::vector<float> m(size_t(n) * size_t(n_chunk), 0.0f);
        for (int32_t i = 0; i < n_chunk; ++i) {   // chunk row i sits at n - n_chunk + i and sees rows up to it
            std::fill(m.begin() + size_t(i) * size_t(n) + size_t(n - n_chunk + i + 1), m.begin() + size_t(i + 1) * size_t(n),
                      -std::numeric_limits<float>::infinity());
        }
        ggml_backend_tensor_set(mask, m.data(), 0, ggml_nbytes(mask));
    }
    if (redundancy) {
        ggml_backend_tensor_set(h, hidden, 0, ggml_nbytes(h));
        ggml_backend_tensor_set(first, pairs->first.data(), 0, ggml_nbytes(first));
        ggml_backend_tensor_set(second, pairs->second.data(), 0, ggml_nbytes(second));
    }
    if (ggml_backend_graph_compute(cpu, gf) != GGML_STATUS_SUCCESS) {
        fail(OM_STATUS_BACKEND_ERROR, "the CPU backend failed to score the rows");
    }
    if (attention) {
        out.received.resize(size_t(n));
        ggml_backend_tensor_get(received, out.received.data(), 0, ggml_nbytes(received));
    }
    if (redundancy) {
        out.cosines.resize(pairs->first.size());
        ggml_backend_tensor_get(cosines, out.cosines.data(), 0, ggml_nbytes(cosines));
    }
    return out;
}

} // namespace

om_status om_memory_select(const om_memory_params * params, int32_t n, int32_t n_chunk, const float * hidden,
                           int32_t dim, const float * queries, int32_t n_head, const float * keys, int32_t n_head_kv,
                           int32_t head_dim, const int8_t * modality, const float * history, const int32_t * seq,
                           const int32_t * pos, int32_t budget_audio, int32_t budget_visual, int32_t * out_kept,
                           int32_t * out_n_kept, float * out_importance) {
    return guarded([&] {
        require(params != nullptr && out_kept != nullptr && out_n_kept != nullptr,
                "params, out_kept and out_n_kept must not be NULL");
        check_memory_params(*params);
        require(n >= 0 && n_chunk >= 0 && n_chunk <= n, "need 0 <= n_chunk <= n");
        require(n == 0 || modality != nullptr, "modality must not be NULL");
        require(budget_audio >= 0 && budget_visual >= 0, "budgets must not be negative");
        for (int32_t j = 0; j < n; ++j) {
            require(modality[j] >= OM_MODALITY_TEXT && modality[j] <= OM_MODALITY_AUDIO,
                    "modality values must be 0 (text), 1 (visual) or 2 (audio)");
            require(seq == nullptr || seq[j] >= 0, "stream indices must not be negative");
            require(seq == nullptr || j == 0 || seq[j] > seq[j - 1], "stream indices must ascend");
        }
        const bool attention = policy_needs_importance(*params);
        const bool redundancy = policy_needs_redundancy(*params);
        if (attention && n_chunk > 0) {
            require(queries != nullptr && keys != nullptr, "this policy needs the chunk's queries and the keys");
            require(head_dim > 0 && n_head > 0 && n_head_kv > 0 && n_head % n_head_kv == 0,
                    "need head_dim > 0 and n_head a positive multiple of n_head_kv");
        }
        if (redundancy && n >= 2) {
            require(hidden != nullptr && dim > 0, "this policy needs the redundancy vectors (hidden, dim > 0)");
        }
        std::vector<om::modality> mods(static_cast<size_t>(n));
        for (int32_t j = 0; j < n; ++j) {
            mods[size_t(j)] = om::modality(modality[j]);
        }
        neighbour_pairs pairs;
        if (redundancy) {
            require(params->neighbours == OM_NEIGHBOURS_SEQUENCE || n == 0 || pos != nullptr,
                    "frame neighbours need the rows' positions (pos)");
            pairs = find_neighbour_pairs(params->neighbours, mods.data(), pos, n);
        }
        const measured m = measure(n, n_chunk, redundancy ? hidden : nullptr, dim, redundancy ? &pairs : nullptr,
                                   attention ? queries : nullptr, n_head, keys, n_head_kv, head_dim,
                                   params->n_score_queries);

        std::vector<float> importance(size_t(n), 0.0f);
        for (int32_t j = 0; j < n; ++j) {
            const bool in_memory = j < n - n_chunk;
            const float now = m.received.empty() ? 0.0f : m.received[size_t(j)];
            if (in_memory && history != nullptr) {
                importance[size_t(j)] = m.received.empty() ? history[j] : 0.5f * (history[j] + now);
            } else {
                importance[size_t(j)] = now;
            }
        }
        selection_input in;
        in.mod = mods.data();
        in.n = n;
        in.importance = importance.data();
        if (!m.cosines.empty()) {
            in.pairs = &pairs;
            in.pair_cos = m.cosines.data();
        }
        in.budget_audio = budget_audio;
        in.budget_visual = budget_visual;
        in.seq = seq;
        const std::vector<int32_t> kept = select_rows(*params, in);
        std::copy(kept.begin(), kept.end(), out_kept);
        *out_n_kept = int32_t(kept.size());
        if (out_importance != nullptr) {
            std::copy(importance.begin(), importance.end(), out_importance);
        }
    });
}
