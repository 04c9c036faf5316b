"""Output types: which ggml type each tensor gets, and its encoded bytes (through gguf.quants).

Policy, per tensor (its `role`, WEIGHT unless a model family says otherwise):
- WEIGHT: 1-D tensors (norm weights, biases) stay F32: they are tiny and ggml adds/multiplies them in F32.
  Tensors of 2 or more dimensions take the requested output type. A block-quantized type (Q8_0, Q4_0: blocks
  of 32 along a row) needs a row length divisible by the block size; a tensor whose rows are not falls back
  to F16, like llama.cpp's converter does.
- KEEP_F32: always F32 (generated position tables, biases stored as 2-D columns), as llama.cpp writes them.
- CONV: convolution kernels: F32 in an f32 file, F16 otherwise, since ggml's im2col convolutions take only
  F32/F16 kernels.
K-quants are not offered: gguf-py can only dequantize them (use libllama's quantizer on an F16 file).
Projector files take PROJECTOR_OUTTYPES only, the types llama.cpp's converter writes them in.
"""

from __future__ import annotations

import math

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType, quants

from ..errors import ConversionError

_OUTTYPES = {
    "f32": (GGMLQuantizationType.F32, LlamaFileType.ALL_F32),
    "f16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
    "bf16": (GGMLQuantizationType.BF16, LlamaFileType.MOSTLY_BF16),
    "q8_0": (GGMLQuantizationType.Q8_0, LlamaFileType.MOSTLY_Q8_0),
    "q4_0": (GGMLQuantizationType.Q4_0, LlamaFileType.MOSTLY_Q4_0),
}
OUTTYPES = tuple(_OUTTYPES)
PROJECTOR_OUTTYPES = ("f32", "f16", "bf16", "q8_0")

WEIGHT, KEEP_F32, CONV = "weight", "keep_f32", "conv"

# Types stored as whole numbers per element; anything else is block-quantized.
_FLOAT_TYPES = (GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16)


def check_outtype(outtype: str) -> str:
    key = str(outtype).lower()
    if key not in _OUTTYPES:
        raise ConversionError(f"unknown output type {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    return key


def check_projector_outtype(outtype: str) -> str:
    key = check_outtype(outtype)
    if key not in PROJECTOR_OUTTYPES:
        raise ConversionError(f"projector files cannot be written as {key}; "
                              f"choose one of {', '.join(PROJECTOR_OUTTYPES)}")
    return key


def projector_outtype(outtype: str) -> str:
    """The projector type that goes with a text model converted to `outtype`: the same, or q8_0 for the types
    (q4_0) that projector files do not take."""
    key = check_outtype(outtype)
    return key if key in PROJECTOR_OUTTYPES else "q8_0"


def file_type(outtype: str) -> LlamaFileType:
    """The `general.file_type` value of a file converted to `outtype`."""
    return _OUTTYPES[check_outtype(outtype)][1]


def is_quantized(outtype: str) -> bool:
    return _OUTTYPES[check_outtype(outtype)][0] not in _FLOAT_TYPES


def tensor_type(outtype: str, shape: tuple[int, ...], role: str = WEIGHT) -> GGMLQuantizationType:
    """The ggml type a tensor of this (numpy-order) shape and role is stored in for `outtype` (module policy)."""
    wanted = _OUTTYPES[check_outtype(outtype)][0]
    if role == KEEP_F32 or len(shape) < 2:
        return GGMLQuantizationType.F32
    if role == CONV:
        return GGMLQuantizationType.F32 if wanted == GGMLQuantizationType.F32 else GGMLQuantizationType.F16
    block = GGML_QUANT_SIZES[wanted][0]
    if shape[-1] % block != 0:
        return GGMLQuantizationType.F16
    return wanted


def nbytes(shape: tuple[int, ...], qtype: GGMLQuantizationType) -> int:
    block, type_size = GGML_QUANT_SIZES[qtype]
    return math.prod(shape) // block * type_size


def encode(data: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """`data` (float32) encoded as `qtype`, ready for GGUFWriter.write_tensor_data."""
    return quants.quantize(np.ascontiguousarray(data, dtype=np.float32), qtype)
