// The x86 kernels of packed Q8_0 products (built with AVX-512 and AMX enabled; see kernels/packed-q8.h for
// when they may run). Plain declarations only: this header is shared with code built for any x86 CPU.
//
// A panel holds 16 weight rows. Block b of K (32 values) of a panel is 544 bytes: 512 bytes of values as an
// AMX B tile (8 rows of 64 bytes: group j/4 of K, then the 16 weight rows, then j%4), each value stored as
// uint8 = int8 + 128, then the 16 rows' fp16 scales. Same size as 16 rows of Q8_0, so packing is in place.
//
// A quantized activation row: K int8 values (ggml's Q8_0 rounding), then a float scale per block (the fp16
// value ggml would store), then an int32 offset per block, 128 × the sum of its values: the products run on
// uint8 weights (w + 128), so 128 × that sum comes off every block's dot product.
#pragma once

#include <cstddef>
#include <cstdint>

namespace om::q8x86 {

constexpr int k_group_rows = 16;

// Asks Linux for the AMX tile state (once per process); false when the kernel refuses.
bool request_tiles();

// 16 Q8_0 rows (row_bytes apart) of K values -> one panel (16 · K/32 · 34 bytes).
void pack_panel(const uint8_t * rows, size_t row_bytes, int64_t k, uint8_t * panel);

// Rows [row_begin, row_end) of x (n_rows real rows, x_row_bytes apart) -> quantized rows out_row_bytes apart
// (K + 8·K/32); rows at or past n_rows are zeroed (padding to whole tiles).
void quantize_rows(const float * x, size_t x_row_bytes, int64_t k, int64_t row_begin, int64_t row_end,
                   int64_t n_rows, uint8_t * out, size_t out_row_bytes);

// y[16·p ...] for panels [panel_begin, panel_end) against one quantized row (AVX-512 VNNI).
void gemv(const uint8_t * panels, int64_t k, int64_t panel_begin, int64_t panel_end, const uint8_t * xq, float * y);

// The same against m quantized rows (xq padded to a multiple of 32 rows), on AMX tiles; output row i at
// y + i · y_row_floats. The calling thread must have request_tiles() granted to its process.
void gemm(const uint8_t * panels, int64_t k, int64_t panel_begin, int64_t panel_end, const uint8_t * xq,
          size_t xq_row_bytes, int64_t m, float * y, size_t y_row_floats);

} // namespace om::q8x86
