// Matrix products on our own weight layouts, for x86 CPUs with AMX.
//
// ggml's own AMX weight buffers are what make Q8_0 and Q4_0 fast on such CPUs, but in the pinned build their
// batched products fault (GCC 12 drops the stores that fill the tile configuration), and ggml's other
// layouts are compute-bound on few cores. So the decoder's Q8_0 and Q4_0 weights are repacked once at load
// into 16-row panels (kernels/packed-x86.h) that serve both paths: one activation row (decode) runs on
// AVX-512 VNNI, more rows (prefill) on AMX int8 tiles. Activations are quantized per 32 values exactly as
// ggml's Q8_0 does, and the block products are exact integers, so results match ggml's products up to the
// order of float sums. F16 weights stay as stored; one row is multiplied in float with AVX-512 (ggml rounds
// the activations to fp16 first), while F16 batches stay on ggml's product, the faster one there. Everything
// else stays on ggml.
#pragma once

#include "ggml.h"

namespace om {

// x86-64 with AVX-512 (F, BW, VNNI), F16C and AMX-INT8, and Linux granting the tile state.
bool packed_matmul_available();

// A weight our kernels take: 2-D and contiguous; Q8_0 or Q4_0 with a multiple of 16 rows, or F16 with rows a
// multiple of 16 long.
bool packed_matmul_accepts(const ggml_tensor * w);

// Rewrites w's data (host memory) into panels (F16: as it is) and marks w; from then on only mul_mat() may
// read it.
void pack_weight(ggml_tensor * w);

bool is_packed(const ggml_tensor * w);

// w [K, N] times x [K, M] -> [N, M]: our product for weights our kernels took, ggml_mul_mat otherwise.
ggml_tensor * mul_mat(ggml_context * ctx, ggml_tensor * w, ggml_tensor * x);

// What the op profile calls the nodes mul_mat() adds ("MUL_MAT", "QUANTIZE"); nullptr for other nodes.
const char * packed_op_name(const ggml_tensor * node);

} // namespace om
