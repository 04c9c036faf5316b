// The x86 kernels behind packed Q8_0 and Q4_0 products (kernels/packed-matmul.h): AVX-512 VNNI for one
// activation row, AMX int8 tiles for more. This file alone is compiled with AVX-512 and AMX enabled, so it is
// only entered after packed_matmul_available() has checked the CPU; it includes no shared header with inline
// code, so no AVX-512 instance of anything leaks to callers on other CPUs.
#if defined(__x86_64__) && defined(OMNIMEM_X86_KERNELS)

#include "kernels/packed-x86.h"

#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <type_traits>

namespace om::packed_x86 {

namespace {

constexpr int64_t k_block = 32;            // values per block of both formats
constexpr int64_t k_prefetch_blocks = 4;
constexpr int64_t k_slice_blocks = 64;     // 2048 values of K: 1 MiB of a 512-row batch
constexpr int64_t k_f16_prefetch_bytes = 2048;

// What differs between the formats: a file block (fp16 scale first) and a panel block's values.
struct q8_0 {
    static constexpr int64_t file_block_bytes = 34;
    static constexpr int64_t values_bytes = 512;
};
struct q4_0 {
    static constexpr int64_t file_block_bytes = 18;
    static constexpr int64_t values_bytes = 256;
};
template <typename F>
constexpr int64_t panel_block_bytes = F::values_bytes + 2 * k_panel_rows;

// Tiles 0-1: weights (B, 8 rows of 16 columns × 4 bytes = 32 values of K); 2-3: activations (A, 16 rows × 32
// values); 4-7: int32 results (C, 16 × 16). A constant in read-only memory: GCC 12 drops the stores that fill a
// configuration built on the stack before ldtilecfg (the fault of ggml's AMX buffers in the pinned build).
struct alignas(64) tile_config {
    uint8_t  palette;
    uint8_t  start_row;
    uint8_t  reserved[14];
    uint16_t colsb[16];
    uint8_t  rows[16];
};
const tile_config k_tile_config = {1, 0, {}, {64, 64, 32, 32, 64, 64, 64, 64}, {8, 8, 16, 16, 16, 16, 16, 16}};

inline int32_t load_i32(const void * p) {
    int32_t v;
    std::memcpy(&v, p, sizeof(v));
    return v;
}

inline float hmax(__m512 v) { return _mm512_reduce_max_ps(v); }

// One quantized activation row: its int8 values, then a float scale and an int32 sum per block (see the header).
struct quantized_row {
    const int8_t * q;
    const float * scale;
    const int32_t * sum;
    quantized_row(const uint8_t * row, int64_t k) :
        q(reinterpret_cast<const int8_t *>(row)),
        scale(reinterpret_cast<const float *>(row + k)),
        sum(reinterpret_cast<const int32_t *>(row + k + 4 * (k / k_block))) {}
};

inline __m512 panel_scales(const uint8_t * values) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(values)));
}

// Q4_0 values: the low and the high nibbles of 64 packed bytes, as bytes.
inline __m512i low_nibbles(__m512i v) { return _mm512_and_si512(v, _mm512_set1_epi8(0x0F)); }
inline __m512i high_nibbles(__m512i v) { return _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0F)); }

// The int32 dot products of one panel block with one activation block of x (sum: its values' sum), for the
// panel's 16 weight rows. VNNI multiplies unsigned by signed bytes: Q8_0 runs on x + 128 and takes 128 × each
// weight row's sum (a second product, with ones) off; Q4_0 runs on its codes (value + 8) and takes 8 × x's sum off.
template <typename F>
inline __m512i block_dot(const uint8_t * values, const int8_t * x, int32_t sum) {
    __m512i dot = _mm512_setzero_si512();
    if constexpr (std::is_same_v<F, q8_0>) {
        __m512i weight_sum = _mm512_setzero_si512();
        const __m512i ones = _mm512_set1_epi8(1);
        for (int g = 0; g < 8; ++g) {
            const __m512i w = _mm512_loadu_si512(values + g * 64);
            const __m512i xu = _mm512_set1_epi32(load_i32(x + 4 * g) ^ int32_t(0x80808080));
            dot = _mm512_dpbusd_epi32(dot, xu, w);
            weight_sum = _mm512_dpbusd_epi32(weight_sum, ones, w);
        }
        return _mm512_sub_epi32(dot, _mm512_slli_epi32(weight_sum, 7));
    } else {
        for (int g = 0; g < 4; ++g) {
            const __m512i v = _mm512_loadu_si512(values + g * 64);
            dot = _mm512_dpbusd_epi32(dot, low_nibbles(v), _mm512_set1_epi32(load_i32(x + 4 * g)));
            dot = _mm512_dpbusd_epi32(dot, high_nibbles(v), _mm512_set1_epi32(load_i32(x + 16 + 4 * g)));
        }
        return _mm512_sub_epi32(dot, _mm512_set1_epi32(8 * sum));
    }
}

// G panels of 16 weight rows against one activation row: 16·G outputs.
template <typename F, int G>
inline void gemv_panels(const uint8_t * panel, size_t panel_bytes, int64_t k, const quantized_row & x, float * y) {
    constexpr int64_t block_bytes = panel_block_bytes<F>;
    const int64_t n_blocks = k / k_block;
    __m512 acc[G];
    for (int g = 0; g < G; ++g) {
        acc[g] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < n_blocks; ++b) {
        const uint8_t * blk = panel + b * block_bytes;
        const __m512 xs = _mm512_set1_ps(x.scale[b]);
        for (int g = 0; g < G; ++g) {
            // several streams at once outrun the hardware prefetcher: ask for the block k_prefetch_blocks ahead
            const uint8_t * ahead = blk + g * panel_bytes + k_prefetch_blocks * block_bytes;
            for (int line = 0; line < block_bytes; line += 64) {
                _mm_prefetch(reinterpret_cast<const char *>(ahead + line), _MM_HINT_T0);
            }
            const __m512i dot = block_dot<F>(blk + g * panel_bytes, x.q + b * k_block, x.sum[b]);
            const __m512 ws = panel_scales(blk + g * panel_bytes + F::values_bytes);
            acc[g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(ws, xs), acc[g]);
        }
    }
    for (int g = 0; g < G; ++g) {
        _mm512_storeu_ps(y + 16 * g, acc[g]);
    }
}

// A panel block's values as an AMX B tile of signed bytes: Q8_0's are one already; Q4_0's codes are spread
// to bytes in `tile`, less 8.
template <typename F>
inline const uint8_t * b_tile(const uint8_t * values, uint8_t * tile) {
    if constexpr (std::is_same_v<F, q8_0>) {
        return values;
    } else {
        const __m512i eight = _mm512_set1_epi8(8);
        for (int g = 0; g < 4; ++g) {
            const __m512i v = _mm512_loadu_si512(values + g * 64);
            _mm512_store_si512(tile + g * 64, _mm512_sub_epi8(low_nibbles(v), eight));
            _mm512_store_si512(tile + (g + 4) * 64, _mm512_sub_epi8(high_nibbles(v), eight));
        }
        return tile;
    }
}

// The int32 products of one block of K: 32 activation rows × 16·NT weight rows into c (AMX tiles).
template <typename F, int NT>
inline void amx_block_products(const uint8_t * blk, size_t panel_bytes, const uint8_t * a, size_t a_row_bytes,
                               int32_t (*c)[2][16][16]) {
    alignas(64) uint8_t unpacked[2][512];
    _tile_zero(4);
    _tile_zero(5);
    _tile_loadd(2, a, a_row_bytes);
    _tile_loadd(3, a + 16 * a_row_bytes, a_row_bytes);
    _tile_loadd(0, b_tile<F>(blk, unpacked[0]), 64);
    _tile_dpbssd(4, 2, 0);
    _tile_dpbssd(5, 3, 0);
    _tile_stored(4, c[0][0], 64);
    _tile_stored(5, c[1][0], 64);
    if (NT == 2) {
        _tile_zero(6);
        _tile_zero(7);
        _tile_loadd(1, b_tile<F>(blk + panel_bytes, unpacked[1]), 64);
        _tile_dpbssd(6, 2, 1);
        _tile_dpbssd(7, 3, 1);
        _tile_stored(6, c[0][1], 64);
        _tile_stored(7, c[1][1], 64);
    }
}

// One or two panels (NT) against every block of 32 activation rows, over blocks [b0, b1) of K, on AMX tiles:
// y gets the result, or has it added when `accumulate`. The int32 products of each block of K are scaled
// into float accumulators, since every block has its own scales; the tiles compute the next block's products
// while the vector units scale this one's (two result buffers).
template <typename F, int NT>
void amx_panels(const uint8_t * panel, size_t panel_bytes, int64_t k, int64_t b0, int64_t b1, const uint8_t * xq,
                size_t xq_row_bytes, int64_t m, float * y, size_t y_row_floats, bool accumulate) {
    constexpr int64_t block_bytes = panel_block_bytes<F>;
    alignas(64) int32_t c[2][2][2][16][16];   // [buffer][m tile][n tile][row][column]
    alignas(64) float acc[32][32];
    for (int64_t m0 = 0; m0 < m; m0 += 32) {
        const int64_t rows = m - m0 < 32 ? m - m0 : 32;
        std::memset(acc, 0, sizeof(acc));
        if (accumulate) {
            for (int64_t r = 0; r < rows; ++r) {
                std::memcpy(acc[r], y + (m0 + r) * y_row_floats, sizeof(float) * 16 * NT);
            }
        }
        const uint8_t * a = xq + m0 * xq_row_bytes;
        amx_block_products<F, NT>(panel + b0 * block_bytes, panel_bytes, a + b0 * k_block, xq_row_bytes, c[0]);
        for (int64_t b = b0; b < b1; ++b) {
            const uint8_t * blk = panel + b * block_bytes;
            if (b + 1 < b1) {
                amx_block_products<F, NT>(blk + block_bytes, panel_bytes, a + (b + 1) * k_block, xq_row_bytes,
                                          c[(b + 1 - b0) & 1]);
            }
            const int32_t (*cb)[2][16][16] = c[(b - b0) & 1];
            __m512 ws[NT];
            for (int nt = 0; nt < NT; ++nt) {
                ws[nt] = panel_scales(blk + nt * panel_bytes + F::values_bytes);
            }
            for (int mt = 0; mt < 2; ++mt) {
                for (int r = 0; r < 16; ++r) {
                    const quantized_row x(a + (mt * 16 + r) * xq_row_bytes, k);
                    const __m512 xs = _mm512_set1_ps(x.scale[b]);
                    float * out = acc[mt * 16 + r];
                    for (int nt = 0; nt < NT; ++nt) {
                        const __m512 dot = _mm512_cvtepi32_ps(_mm512_load_si512(cb[mt][nt][r]));
                        _mm512_store_ps(out + 16 * nt, _mm512_fmadd_ps(dot, _mm512_mul_ps(ws[nt], xs),
                                                                       _mm512_load_ps(out + 16 * nt)));
                    }
                }
            }
        }
        for (int64_t r = 0; r < rows; ++r) {
            std::memcpy(y + (m0 + r) * y_row_floats, acc[r], sizeof(float) * 16 * NT);
        }
    }
}

template <typename F>
void pack_panel_as(const uint8_t * rows, size_t row_bytes, int64_t k, uint8_t * panel) {
    const int64_t n_blocks = k / k_block;
    for (int64_t b = 0; b < n_blocks; ++b) {
        uint8_t * out = panel + b * panel_block_bytes<F>;
        for (int r = 0; r < k_panel_rows; ++r) {
            const uint8_t * blk = rows + r * row_bytes + b * F::file_block_bytes;   // fp16 scale, then values
            for (int j = 0; j < F::values_bytes / k_panel_rows; ++j) {
                out[(j / 4) * 64 + r * 4 + j % 4] = blk[2 + j];
            }
            std::memcpy(out + F::values_bytes + 2 * r, blk, 2);
        }
    }
}

template <typename F>
void gemv_as(const uint8_t * panels, int64_t k, int64_t panel_begin, int64_t panel_end, const uint8_t * xq,
             float * y) {
    const size_t panel_bytes = size_t(k / k_block) * panel_block_bytes<F>;
    const quantized_row x(xq, k);
    int64_t p = panel_begin;
    for (; p + 4 <= panel_end; p += 4) {
        gemv_panels<F, 4>(panels + p * panel_bytes, panel_bytes, k, x, y + p * k_panel_rows);
    }
    for (; p < panel_end; ++p) {
        gemv_panels<F, 1>(panels + p * panel_bytes, panel_bytes, k, x, y + p * k_panel_rows);
    }
}

template <typename F>
void gemm_as(const uint8_t * panels, int64_t k, int64_t panel_begin, int64_t panel_end, const uint8_t * xq,
             size_t xq_row_bytes, int64_t m, float * y, size_t y_row_floats) {
    const int64_t n_blocks = k / k_block;
    const size_t panel_bytes = size_t(n_blocks) * panel_block_bytes<F>;
    _tile_loadconfig(&k_tile_config);
    // K in slices, so that the activations' slice stays in the core's L2 cache while every panel passes
    for (int64_t b0 = 0; b0 < n_blocks; b0 += k_slice_blocks) {
        const int64_t b1 = b0 + k_slice_blocks < n_blocks ? b0 + k_slice_blocks : n_blocks;
        int64_t p = panel_begin;
        for (; p + 2 <= panel_end; p += 2) {
            amx_panels<F, 2>(panels + p * panel_bytes, panel_bytes, k, b0, b1, xq, xq_row_bytes, m,
                             y + p * k_panel_rows, y_row_floats, b0 > 0);
        }
        if (p < panel_end) {
            amx_panels<F, 1>(panels + p * panel_bytes, panel_bytes, k, b0, b1, xq, xq_row_bytes, m,
                             y + p * k_panel_rows, y_row_floats, b0 > 0);
        }
    }
    _tile_release();
}

// F16 weights, kept as stored, against one float activation row: NB weight rows, in float (the weights widened
// from fp16). Each row is read whole and in order: long sequential reads are what the memory is fastest at.
template <int NB>
inline void f16_rows(const uint8_t * w, size_t w_row_bytes, int64_t k, const float * x, float * y) {
    __m512 acc[NB];
    for (int j = 0; j < NB; ++j) {
        acc[j] = _mm512_setzero_ps();
    }
    for (int64_t kk = 0; kk < k; kk += 16) {
        const __m512 xv = _mm512_loadu_ps(x + kk);
        for (int j = 0; j < NB; ++j) {
            const uint8_t * at = w + j * w_row_bytes + 2 * kk;
            if ((kk & 31) == 0) {   // several rows at once outrun the hardware prefetcher
                _mm_prefetch(reinterpret_cast<const char *>(at + k_f16_prefetch_bytes), _MM_HINT_T0);
            }
            acc[j] = _mm512_fmadd_ps(xv, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(at))),
                                     acc[j]);
        }
    }
    for (int j = 0; j < NB; ++j) {
        y[j] = _mm512_reduce_add_ps(acc[j]);
    }
}

} // namespace

bool request_tiles() {
    constexpr long arch_req_xcomp_perm = 0x1023;
    constexpr long xfeature_xtiledata = 18;
    return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
}

void pack_panel(weight_format format, const uint8_t * rows, size_t row_bytes, int64_t k, uint8_t * panel) {
    format == weight_format::q8_0 ? pack_panel_as<q8_0>(rows, row_bytes, k, panel)
                                  : pack_panel_as<q4_0>(rows, row_bytes, k, panel);
}

void quantize_rows(const float * x, size_t x_row_bytes, int64_t k, int64_t row_begin, int64_t row_end,
                   int64_t n_rows, uint8_t * out, size_t out_row_bytes) {
    const int64_t n_blocks = k / k_block;
    for (int64_t i = row_begin; i < row_end; ++i) {
        uint8_t * row = out + i * out_row_bytes;
        if (i >= n_rows) {   // padding up to whole tiles
            std::memset(row, 0, out_row_bytes);
            continue;
        }
        const float * src = reinterpret_cast<const float *>(reinterpret_cast<const uint8_t *>(x) + i * x_row_bytes);
        auto * q = reinterpret_cast<int8_t *>(row);
        auto * scale = reinterpret_cast<float *>(row + k);
        auto * sum = reinterpret_cast<int32_t *>(row + k + 4 * n_blocks);
        for (int64_t b = 0; b < n_blocks; ++b) {
            const __m512 v0 = _mm512_loadu_ps(src + b * k_block);
            const __m512 v1 = _mm512_loadu_ps(src + b * k_block + 16);
            const float amax = hmax(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            // as ggml's Q8_0 (x86): d = amax / 127 kept as fp16; values x · (127 / amax) rounded to nearest even.
            // Bit for bit: one value rounded the other way shifts a tiny model's logits by up to 1 %.
            const float d = amax / 127.0f;
            const __m512 inv = _mm512_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
            const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, inv));
            const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, inv));
            _mm_storeu_si128(reinterpret_cast<__m128i *>(q + b * k_block), _mm512_cvtsepi32_epi8(q0));
            _mm_storeu_si128(reinterpret_cast<__m128i *>(q + b * k_block + 16), _mm512_cvtsepi32_epi8(q1));
            scale[b] = _cvtsh_ss(_cvtss_sh(d, 0));
            sum[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        }
    }
}

void gemv(weight_format format, const uint8_t * panels, int64_t k, int64_t panel_begin, int64_t panel_end,
          const uint8_t * xq, float * y) {
    format == weight_format::q8_0 ? gemv_as<q8_0>(panels, k, panel_begin, panel_end, xq, y)
                                  : gemv_as<q4_0>(panels, k, panel_begin, panel_end, xq, y);
}

void gemm(weight_format format, const uint8_t * panels, int64_t k, int64_t panel_begin, int64_t panel_end,
          const uint8_t * xq, size_t xq_row_bytes, int64_t m, float * y, size_t y_row_floats) {
    format == weight_format::q8_0 ? gemm_as<q8_0>(panels, k, panel_begin, panel_end, xq, xq_row_bytes, m, y, y_row_floats)
                                  : gemm_as<q4_0>(panels, k, panel_begin, panel_end, xq, xq_row_bytes, m, y, y_row_floats);
}

void f16_gemv(const uint8_t * w, size_t w_row_bytes, int64_t k, int64_t n_begin, int64_t n_end, const float * x,
              float * y) {
    int64_t n = n_begin;
    for (; n + 4 <= n_end; n += 4) {
        f16_rows<4>(w + n * w_row_bytes, w_row_bytes, k, x, y + n);
    }
    for (; n < n_end; ++n) {
        f16_rows<1>(w + n * w_row_bytes, w_row_bytes, k, x, y + n);
    }
}

} // namespace om::packed_x86

#endif
