#include "kernels/packed-matmul.h"

#include "kernels/packed-x86.h"

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && defined(OMNIMEM_X86_KERNELS)
#include <cpuid.h>
#define OMNIMEM_HAVE_PACKED_MATMUL 1
#endif

namespace om {

namespace {

// w->extra of a packed weight points here (the CPU backend reads extra only for its own buffer types).
const char k_packed_tag = 'P';

#ifdef OMNIMEM_HAVE_PACKED_MATMUL

constexpr int64_t k_block = 32;

packed_x86::weight_format format_of(const ggml_tensor * w) {
    return w->type == GGML_TYPE_Q8_0 ? packed_x86::weight_format::q8_0 : packed_x86::weight_format::q4_0;
}

size_t quantized_row_bytes(int64_t k) { return size_t(k) + 8 * size_t(k / k_block); }

// [begin, end) of n items for thread ith of nth, in whole units of `unit` items.
void split(int64_t n, int64_t unit, int ith, int nth, int64_t & begin, int64_t & end) {
    const int64_t units = (n + unit - 1) / unit;
    const int64_t per = (units + nth - 1) / nth;
    begin = std::min(n, ith * per * unit);
    end = std::min(n, (ith + 1) * per * unit);
}

bool cpu_runs_kernels() {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27)) || !(c & (1u << 29))) {   // OSXSAVE, F16C
        return false;
    }
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        return false;
    }
    const bool avx512 = (b & (1u << 16)) && (b & (1u << 30)) && (c & (1u << 11));     // F, BW, VNNI
    const bool amx = (d & (1u << 24)) && (d & (1u << 25));                             // TILE, INT8
    if (!avx512 || !amx) {
        return false;
    }
    unsigned lo = 0, hi = 0;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    const unsigned needed = (1u << 1) | (1u << 2) | (7u << 5) | (3u << 17);   // SSE, AVX, AVX-512, tiles
    return (lo & needed) == needed && packed_x86::request_tiles();
}

void quantize_op(ggml_tensor * dst, int ith, int nth, void *) {
    const ggml_tensor * x = dst->src[0];
    int64_t begin = 0, end = 0;
    split(dst->ne[1], 1, ith, nth, begin, end);
    packed_x86::quantize_rows(static_cast<const float *>(x->data), x->nb[1], x->ne[0], begin, end, x->ne[1],
                         static_cast<uint8_t *>(dst->data), dst->nb[1]);
}

// src[1]: the activations quantized by quantize_op, or (one row) the float row itself, which every thread
// quantizes for itself: cheaper than a node of its own between two meetings of the threads.
void product_op(ggml_tensor * dst, int ith, int nth, void *) {
    const ggml_tensor * w = dst->src[0];
    const ggml_tensor * x = dst->src[1];
    if (w->type == GGML_TYPE_F16) {   // one row: batches stay on ggml (mul_mat)
        int64_t begin = 0, end = 0;
        split(w->ne[1], 4, ith, nth, begin, end);
        packed_x86::f16_gemv(static_cast<const uint8_t *>(w->data), w->nb[1], w->ne[0], begin, end,
                             static_cast<const float *>(x->data), static_cast<float *>(dst->data));
        return;
    }
    const auto * panels = static_cast<const uint8_t *>(w->data);
    const int64_t n_panels = w->ne[1] / packed_x86::k_panel_rows;
    const int64_t k = w->ne[0];
    const int64_t m = dst->ne[1];
    int64_t begin = 0, end = 0;
    if (m == 1) {
        split(n_panels, 1, ith, nth, begin, end);
        if (begin < end) {
            thread_local std::vector<uint8_t> row;
            row.resize(quantized_row_bytes(k));
            packed_x86::quantize_rows(static_cast<const float *>(x->data), x->nb[1], k, 0, 1, 1, row.data(), row.size());
            packed_x86::gemv(format_of(w), panels, k, begin, end, row.data(), static_cast<float *>(dst->data));
        }
    } else {
        split(n_panels, 2, ith, nth, begin, end);   // the AMX kernel takes panels in pairs
        if (begin < end) {
            packed_x86::gemm(format_of(w), panels, k, begin, end, static_cast<const uint8_t *>(x->data), x->nb[1], m,
                             static_cast<float *>(dst->data), dst->nb[1] / sizeof(float));
        }
    }
}

#endif

} // namespace

bool packed_matmul_available() {
#ifdef OMNIMEM_HAVE_PACKED_MATMUL
    static const bool available = cpu_runs_kernels();
    return available;
#else
    return false;
#endif
}

bool packed_matmul_accepts(const ggml_tensor * w) {
    if (!ggml_is_contiguous(w) || w->ne[2] != 1 || w->ne[3] != 1) {
        return false;
    }
    if (w->type == GGML_TYPE_F16) {
        return w->ne[0] % 16 == 0;
    }
    return (w->type == GGML_TYPE_Q8_0 || w->type == GGML_TYPE_Q4_0) && w->ne[1] % packed_x86::k_panel_rows == 0;
}

void pack_weight(ggml_tensor * w) {
#ifdef OMNIMEM_HAVE_PACKED_MATMUL
    if (w->type == GGML_TYPE_F16) {   // used as stored
        w->extra = const_cast<char *>(&k_packed_tag);
        return;
    }
    auto * data = static_cast<uint8_t *>(w->data);
    const size_t panel_bytes = w->nb[1] * packed_x86::k_panel_rows;
    std::vector<uint8_t> rows(panel_bytes);
    for (int64_t p = 0; p < w->ne[1] / packed_x86::k_panel_rows; ++p) {
        std::memcpy(rows.data(), data + p * panel_bytes, panel_bytes);
        packed_x86::pack_panel(format_of(w), rows.data(), w->nb[1], w->ne[0], data + p * panel_bytes);
    }
    w->extra = const_cast<char *>(&k_packed_tag);
#else
    (void) w;
#endif
}

bool is_packed(const ggml_tensor * w) { return w->extra == &k_packed_tag; }

ggml_tensor * mul_mat(ggml_context * ctx, ggml_tensor * w, ggml_tensor * x) {
#ifdef OMNIMEM_HAVE_PACKED_MATMUL
    // F16 batches stay on ggml: its product was the faster one there (ours 0.9× at 3B prefill)
    if (is_packed(w) && !(w->type == GGML_TYPE_F16 && x->ne[1] > 1)) {
        GGML_ASSERT(x->type == GGML_TYPE_F32 && x->ne[0] == w->ne[0] && x->ne[2] == 1 && x->ne[3] == 1);
        if (x->nb[0] != sizeof(float)) {
            x = ggml_cont(ctx, x);
        }
        const int64_t m = x->ne[1];
        ggml_tensor * args[2] = {w, x};
        if (m > 1) {
            const int64_t padded = (m + 31) / 32 * 32;   // AMX takes 32 rows at a time
            args[1] = ggml_custom_4d(ctx, GGML_TYPE_I8, int64_t(quantized_row_bytes(w->ne[0])), padded, 1, 1, &x, 1,
                                     quantize_op, GGML_N_TASKS_MAX, nullptr);
        }
        return ggml_custom_4d(ctx, GGML_TYPE_F32, w->ne[1], m, 1, 1, args, 2, product_op, GGML_N_TASKS_MAX, nullptr);
    }
#endif
    return ggml_mul_mat(ctx, w, x);
}

const char * packed_op_name(const ggml_tensor * node) {
    if (node->op != GGML_OP_CUSTOM || node->src[0] == nullptr) {
        return nullptr;
    }
    if (is_packed(node->src[0])) {
        return "MUL_MAT";
    }
    return node->type == GGML_TYPE_I8 && node->src[0]->type == GGML_TYPE_F32 ? "QUANTIZE" : nullptr;
}

} // namespace om
