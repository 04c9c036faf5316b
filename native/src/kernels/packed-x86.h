// The x86 kernels of packed Q8_0 and Q4_0 products, and of F16 ones (built with AVX-512 and AMX enabled; kernels/packed-matmul.h
// says when they may run). Plain declarations only: this header is shared with code built for any x86 CPU.
//
// A panel holds 16 weight rows. Block b of K (32 values) of a panel is its values, then the 16 rows' fp16
// scales. Q8_0: 512 bytes of int8, laid out as an AMX B tile, 8 rows of 64 bytes (group j/4 of K, then the 16
// weight rows, then j%4). Q4_0: 256 bytes, the same layout for values 0-15 in the low nibbles and 16-31 in
// the high ones (which is each row's own Q4_0 bytes, 4 at a time; a nibble is the value + 8). Either way a
// panel is exactly as large as its 16 rows in the file, so packing is in place.
//
// A quantized activation row: K int8 values (ggml's Q8_0 rounding), then a float scale per block (the fp16
// value ggml would store), then an int32 per block, the sum of its values (Q4_0's codes are the values + 8,
// so 8 × that sum comes off each block's product with them).
#pragma once

#include <cstddef>
#include <cstdint>

namespace om::packed_x86 {

constexpr int k_panel_rows = 16;

enum class weight_format { q8_0, q4_0 };

// Asks Linux for the AMX tile state (once per process); false when the kernel refuses.
bool request_tiles();

// 16 rows (row_bytes apart, in the file's format) of K values -> one panel.
void pack_panel(weight_format format, const uint8_t * rows, size_t row_bytes, int64_t k, uint8_t * panel);

// Rows [row_begin, row_end) of x (n_rows real rows, x_row_bytes apart) -> quantized rows out_row_bytes apart
// (K + 8·K/32); rows at or past n_rows are zeroed (padding to whole tiles).
void quantize_rows(const float * x, size_t x_row_bytes, int64_t k, int64_t row_begin, int64_t row_end,
                   int64_t n_rows, uint8_t * out, size_t out_row_bytes);

// y[16·p ...] for panels [panel_begin, panel_end) against one quantized row (AVX-512 VNNI).
void gemv(weight_format format, const uint8_t * panels, int64_t k, int64_t panel_begin, int64_t panel_end,
          const uint8_t * xq, float * y);

// The same against m quantized rows (xq padded to a multiple of 32 rows), on AMX tiles; output row i at
// y + i · y_row_floats. The process must have been granted the tile state (request_tiles).
void gemm(weight_format format, const uint8_t * panels, int64_t k, int64_t panel_begin, int64_t panel_end,
          const uint8_t * xq, size_t xq_row_bytes, int64_t m, float * y, size_t y_row_floats);

// F16 weights as stored (rows w_row_bytes apart; K a multiple of 16) times one float row x: y[n] for rows
// [n_begin, n_end), in float with AVX-512.
void f16_gemv(const uint8_t * w, size_t w_row_bytes, int64_t k, int64_t n_begin, int64_t n_end, const float * x,
              float * y);

} // namespace om::packed_x86
