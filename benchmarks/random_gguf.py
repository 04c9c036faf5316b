"""Random-weight text GGUFs at real model dimensions, for speed benchmarks.

Speed does not depend on what the weights say, only on their shapes and types, so a benchmark does not need
to download a checkpoint: this module writes a `qwen2vl` text GGUF (the architecture llama.cpp uses for the
Qwen2.5-Omni thinker's language model) with random weights and a stand-in tokenizer that both llama.cpp and
omnimem.cpp accept. Files are cached by dimensions, weight type and seed.

Usage from another benchmark:

    from random_gguf import QWEN25_OMNI_3B, cached_text_gguf, decode_weight_bytes
    path = cached_text_gguf(workdir, QWEN25_OMNI_3B, "q4_0")
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import gguf
import numpy as np

MT = gguf.MODEL_TENSOR

# Standard deviation of every dequantized weight matrix entry. With RMS-normalised inputs, a row of 2048 or
# 11008 such weights gives projections of order one, so activations stay far from the F16 range limits.
WEIGHT_STD = 0.02

# Bumped whenever the bytes written for a given (dims, type, seed) change, so stale cache entries are ignored.
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class TextDims:
    """Hyperparameters of a Qwen2-style decoder with M-RoPE."""

    name: str
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    rope_theta: float
    rms_eps: float
    rope_sections: tuple[int, int, int, int]
    n_ctx_train: int


# The thinker's language model of Qwen2.5-Omni-3B (untied output head).
QWEN25_OMNI_3B = TextDims(
    name="qwen2.5-omni-3b-text",
    n_vocab=151936,
    n_embd=2048,
    n_layer=36,
    n_head=16,
    n_head_kv=2,
    head_dim=128,
    n_ff=11008,
    rope_theta=1e6,
    rms_eps=1e-6,
    rope_sections=(16, 24, 24, 0),
    n_ctx_train=32768,
)

WEIGHT_TYPES = {
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "q4_0": (gguf.GGMLQuantizationType.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
}

# Spread of the quantized integers when drawn uniformly over their full range:
# Q8_0 stores int8 in [-128, 127]; Q4_0 stores nibbles n in [0, 15] that mean n - 8.
_UNIFORM_INT8_STD = float(np.sqrt((256**2 - 1) / 12))
_UNIFORM_NIBBLE_STD = float(np.sqrt((16**2 - 1) / 12))

# Qwen2.5-Omni control tokens at their real ids, so prompts built with real ids stay meaningful.
_SPECIAL_TOKENS = {
    151643: "<|endoftext|>",
    151644: "<|im_start|>",
    151645: "<|im_end|>",
    151646: "<|AUDIO|>",
    151647: "<|audio_bos|>",
    151648: "<|audio_eos|>",
    151652: "<|vision_bos|>",
    151653: "<|vision_eos|>",
    151655: "<|IMAGE|>",
    151656: "<|VIDEO|>",
}


def _tensor_specs(d: TextDims) -> list[tuple[str, tuple[int, ...], bool]]:
    """(name, numpy shape, is_matrix) in file order; matrices get the weight type, the rest stays F32."""
    q_dim, kv_dim = d.n_head * d.head_dim, d.n_head_kv * d.head_dim

    def name(t: MT, suffix: str, bid: int | None = None) -> str:
        return gguf.TENSOR_NAMES[t].format(bid=bid) + suffix

    specs = [(name(MT.TOKEN_EMBD, ".weight"), (d.n_vocab, d.n_embd), True)]
    for i in range(d.n_layer):
        specs += [
            (name(MT.ATTN_NORM, ".weight", i), (d.n_embd,), False),
            (name(MT.ATTN_Q, ".weight", i), (q_dim, d.n_embd), True),
            (name(MT.ATTN_Q, ".bias", i), (q_dim,), False),
            (name(MT.ATTN_K, ".weight", i), (kv_dim, d.n_embd), True),
            (name(MT.ATTN_K, ".bias", i), (kv_dim,), False),
            (name(MT.ATTN_V, ".weight", i), (kv_dim, d.n_embd), True),
            (name(MT.ATTN_V, ".bias", i), (kv_dim,), False),
            (name(MT.ATTN_OUT, ".weight", i), (d.n_embd, q_dim), True),
            (name(MT.FFN_NORM, ".weight", i), (d.n_embd,), False),
            (name(MT.FFN_GATE, ".weight", i), (d.n_ff, d.n_embd), True),
            (name(MT.FFN_UP, ".weight", i), (d.n_ff, d.n_embd), True),
            (name(MT.FFN_DOWN, ".weight", i), (d.n_embd, d.n_ff), True),
        ]
    specs += [
        (name(MT.OUTPUT_NORM, ".weight"), (d.n_embd,), False),
        (name(MT.OUTPUT, ".weight"), (d.n_vocab, d.n_embd), True),
    ]
    return specs


def _byte_shape(shape: tuple[int, ...], qtype: gguf.GGMLQuantizationType) -> tuple[int, ...]:
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    return (*shape[:-1], shape[-1] // block * type_size)


def _random_matrix(rng: np.random.Generator, shape: tuple[int, ...], qtype) -> np.ndarray:
    """Random weights drawn directly in the storage format: random integers with one fixed scale per
    tensor. Quantizing 3B float weights in Python would take far longer and gives the same speed."""
    rows, cols = shape
    if qtype == gguf.GGMLQuantizationType.F16:
        ints = np.frombuffer(rng.bytes(rows * cols), dtype=np.int8).reshape(shape)
        return ints.astype(np.float16) * np.float16(WEIGHT_STD / _UNIFORM_INT8_STD)
    if qtype == gguf.GGMLQuantizationType.Q8_0:
        scale = WEIGHT_STD / _UNIFORM_INT8_STD
    elif qtype == gguf.GGMLQuantizationType.Q4_0:
        scale = WEIGHT_STD / _UNIFORM_NIBBLE_STD
    else:
        raise ValueError(f"unsupported weight type {qtype.name}")
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    # Every block starts with its f16 scale; the rest of the block is the integers, any bit pattern valid.
    blocks = np.frombuffer(bytearray(rng.bytes(rows * cols // block * type_size)), dtype=np.uint8)
    blocks = blocks.reshape(rows, cols // block, type_size)
    blocks[:, :, :2] = np.frombuffer(np.float16(scale).tobytes(), dtype=np.uint8)
    return blocks.reshape(_byte_shape(shape, qtype))


def _random_vector(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name.endswith(".bias"):
        return (rng.standard_normal(shape, dtype=np.float32) * WEIGHT_STD).astype(np.float32)
    return np.ones(shape, dtype=np.float32)  # RMSNorm gains


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 byte-level BPE alphabet: printable bytes stand for themselves, the others are moved to
    code points from 256 up, so every byte has a visible one-character token."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _add_tokenizer(w: gguf.GGUFWriter, n_vocab: int) -> None:
    """A stand-in byte-level BPE vocabulary with the Qwen2 pre-tokenizer: the 256 byte tokens, one merge,
    filler tokens up to the vocabulary size and the control tokens at their real ids. llama.cpp refuses a
    "gpt2" tokenizer without a merges list, and its vocabulary size must match the embedding rows."""
    space = _bytes_to_unicode()[ord(" ")]
    tokens = [*_bytes_to_unicode().values(), space + space]
    tokens += [f"tok{i}" for i in range(len(tokens), n_vocab)]
    types = [gguf.TokenType.NORMAL] * n_vocab
    for tid, text in _SPECIAL_TOKENS.items():
        if tid < n_vocab:
            tokens[tid], types[tid] = text, gguf.TokenType.CONTROL
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([f"{space} {space}"])
    if 151645 < n_vocab:
        w.add_eos_token_id(151645)
        w.add_pad_token_id(151643)
    w.add_add_bos_token(False)


def write_text_gguf(path: str | os.PathLike, dims: TextDims, wtype: str, seed: int = 0) -> Path:
    """Writes a random-weight text GGUF tensor by tensor, so memory use stays at about one tensor."""
    qtype, ftype = WEIGHT_TYPES[wtype]
    path = Path(path)
    w = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN2VL])
    w.add_name(f"random {dims.name} {wtype}")
    w.add_file_type(ftype)
    if qtype != gguf.GGMLQuantizationType.F16:
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(dims.n_ctx_train)
    w.add_embedding_length(dims.n_embd)
    w.add_block_count(dims.n_layer)
    w.add_feed_forward_length(dims.n_ff)
    w.add_head_count(dims.n_head)
    w.add_head_count_kv(dims.n_head_kv)
    w.add_rope_freq_base(dims.rope_theta)
    w.add_layer_norm_rms_eps(dims.rms_eps)
    w.add_rope_dimension_sections(list(dims.rope_sections))
    _add_tokenizer(w, dims.n_vocab)

    specs = _tensor_specs(dims)
    for name, shape, is_matrix in specs:
        if not is_matrix:
            w.add_tensor_info(name, shape, np.dtype(np.float32), int(np.prod(shape)) * 4)
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor_info(name, shape, np.dtype(np.float16), int(np.prod(shape)) * 2)
        else:
            byte_shape = _byte_shape(shape, qtype)
            w.add_tensor_info(name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for index, (name, shape, is_matrix) in enumerate(specs):
        # One generator per tensor: a tensor's values do not depend on the ones written before it.
        rng = np.random.default_rng([seed, index])
        data = _random_matrix(rng, shape, qtype) if is_matrix else _random_vector(rng, name, shape)
        w.write_tensor_data(data)
    w.close()
    return path


def cached_text_gguf(workdir: str | os.PathLike, dims: TextDims, wtype: str, seed: int = 0,
                     log=print) -> Path:
    """The path of the random GGUF for (dims, wtype, seed) in workdir, written first if missing."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{dims.name}-random-v{FORMAT_VERSION}-{wtype}-s{seed}.gguf"
    if not path.exists():
        log(f"writing {path} ...")
        partial = path.with_suffix(".gguf.part")
        write_text_gguf(partial, dims, wtype, seed)
        os.replace(partial, path)  # a crash mid-write never leaves a file that looks complete
    return path


def decode_weight_bytes(path: str | os.PathLike) -> int:
    """Bytes of weights one decode step reads: every tensor except the embedding table, of which a token
    reads one row."""
    reader = gguf.GGUFReader(path)
    total = 0
    for t in reader.tensors:
        if t.name == gguf.TENSOR_NAMES[MT.TOKEN_EMBD] + ".weight":
            total += int(t.n_bytes) // int(t.shape[-1])  # GGUFReader lists ne order: shape[-1] is rows
        else:
            total += int(t.n_bytes)
    return total
