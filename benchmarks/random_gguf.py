"""Random-weight GGUFs at real model dimensions, for speed benchmarks.

Speed does not depend on what the weights say, only on their shapes and types, so a benchmark does not need
to download a checkpoint: this module writes a `qwen2vl` text GGUF (the architecture llama.cpp uses for the
Qwen2.5-Omni thinker's language model) with random weights and a stand-in tokenizer that both llama.cpp and
omnimem.cpp accept, and the matching multimodal projector (arch `clip`, projector type `qwen2.5o`: the vision
and audio towers, laid out as `omnimem convert --mmproj` writes them, so llama.cpp's libmtmd loads it too).
Files are cached by dimensions, weight type and seed.

Usage from another benchmark:

    from random_gguf import QWEN25_OMNI_3B, QWEN25_OMNI_3B_PROJECTOR, cached_projector_gguf, cached_text_gguf
    path = cached_text_gguf(workdir, QWEN25_OMNI_3B, "q4_0")
    mmproj = cached_projector_gguf(workdir, QWEN25_OMNI_3B_PROJECTOR)      # F16 matrices
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
    tensor. Quantizing 3B float weights in Python would take far longer and gives the same speed. F16 takes
    any shape (convolution kernels too); the block-quantized types take matrices."""
    if qtype == gguf.GGMLQuantizationType.F16:
        ints = np.frombuffer(rng.bytes(int(np.prod(shape))), dtype=np.int8).reshape(shape)
        return ints.astype(np.float16) * np.float16(WEIGHT_STD / _UNIFORM_INT8_STD)
    rows, cols = shape
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


def _cached(path: Path, write, log) -> Path:
    """`path`, written first by write(partial_path) if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        log(f"writing {path} ...")
        partial = path.with_suffix(".gguf.part")
        write(partial)
        os.replace(partial, path)  # a crash mid-write never leaves a file that looks complete
    return path


def cached_text_gguf(workdir: str | os.PathLike, dims: TextDims, wtype: str, seed: int = 0,
                     log=print) -> Path:
    """The path of the random GGUF for (dims, wtype, seed) in workdir, written first if missing."""
    path = Path(workdir) / f"{dims.name}-random-v{FORMAT_VERSION}-{wtype}-s{seed}.gguf"
    return _cached(path, lambda partial: write_text_gguf(partial, dims, wtype, seed), log)


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


# ---------------------------------------------------------------------------------- multimodal projector


@dataclasses.dataclass(frozen=True)
class ProjectorDims:
    """Hyperparameters of Qwen2.5-Omni's vision tower (a Qwen2.5-VL ViT) and audio tower (a Whisper-style
    encoder), both projecting into the language model's width."""

    name: str
    n_embd_text: int
    vision_layers: int
    vision_width: int
    vision_heads: int
    vision_ff: int
    patch_size: int
    spatial_merge: int
    window_px: int
    fullatt_blocks: tuple[int, ...]  # blocks attending over whole frames; the others attend within windows
    audio_layers: int
    audio_width: int
    audio_heads: int
    audio_ff: int
    n_mel: int
    audio_positions: int  # rows of the sinusoidal position table
    audio_n_window: int   # half the mel frames of one attention chunk (2 s)


# Qwen2.5-Omni-3B's thinker: both towers are the same in the 7B, only the output width differs.
QWEN25_OMNI_3B_PROJECTOR = ProjectorDims(
    name="qwen2.5-omni-3b-mmproj",
    n_embd_text=QWEN25_OMNI_3B.n_embd,
    vision_layers=32,
    vision_width=1280,
    vision_heads=16,
    vision_ff=3420,
    patch_size=14,
    spatial_merge=2,
    window_px=112,
    fullatt_blocks=(7, 15, 23, 31),
    audio_layers=32,
    audio_width=1280,
    audio_heads=20,
    audio_ff=5120,
    n_mel=128,
    audio_positions=1500,
    audio_n_window=100,
)

# What the Qwen2.5-Omni processor uses (CLIP normalisation, Qwen2VLImageProcessor's pixel limits).
_IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
_IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]
_IMAGE_MIN_PIXELS, _IMAGE_MAX_PIXELS = 56 * 56, 28 * 28 * 1280
_IMAGE_SIZE = 560  # the nominal size llama.cpp's converter writes; libmtmd only warms up with it

# Tensor kinds of a projector: matrices and convolution kernels F16, the rest F32.
_F16, _F32, _POSITIONS = "f16", "f32", "positions"


def _projector_specs(d: ProjectorDims) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, numpy shape, kind) in file order, with llama.cpp's clip tensor names."""
    specs: list[tuple[str, tuple[int, ...], str]] = []

    def linear(name: str, n_out: int, n_in: int, bias: bool = True) -> None:
        specs.append((f"{name}.weight", (n_out, n_in), _F16))
        if bias:
            specs.append((f"{name}.bias", (n_out,), _F32))

    c, p = d.vision_width, d.patch_size
    # The Conv3d patch kernel over 2 frames, stored as its two temporal slices.
    specs += [(f"v.patch_embd.weight{suffix}", (c, 3, p, p), _F16) for suffix in ("", ".1")]
    for i in range(d.vision_layers):
        blk = f"v.blk.{i}."
        specs += [(blk + "ln1.weight", (c,), _F32), (blk + "ln2.weight", (c,), _F32)]
        for proj in ("attn_q", "attn_k", "attn_v", "attn_out"):
            linear(blk + proj, c, c)
        linear(blk + "ffn_gate", d.vision_ff, c)
        linear(blk + "ffn_up", d.vision_ff, c)
        linear(blk + "ffn_down", c, d.vision_ff)
    merged = c * d.spatial_merge**2
    specs.append(("v.post_ln.weight", (c,), _F32))
    linear("mm.0", merged, merged)
    linear("mm.2", d.n_embd_text, merged)

    a = d.audio_width
    for n, n_in in ((1, d.n_mel), (2, a)):
        # kernel size 3; the bias is a [C, 1] column so that it broadcasts over the [T, C] conv output
        specs += [(f"a.conv1d.{n}.weight", (a, n_in, 3), _F16), (f"a.conv1d.{n}.bias", (a, 1), _F32)]
    specs.append(("a.position_embd.weight", (d.audio_positions, a), _POSITIONS))
    for i in range(d.audio_layers):
        blk = f"a.blk.{i}."
        linear(blk + "attn_q", a, a)
        linear(blk + "attn_k", a, a, bias=False)  # Whisper's k_proj has no bias
        linear(blk + "attn_v", a, a)
        linear(blk + "attn_out", a, a)
        specs += [(blk + f"{ln}.{part}", (a,), _F32) for ln in ("ln1", "ln2") for part in ("weight", "bias")]
        linear(blk + "ffn_up", d.audio_ff, a)
        linear(blk + "ffn_down", a, d.audio_ff)
    specs += [(f"a.post_ln.{part}", (a,), _F32) for part in ("weight", "bias")]
    linear("mm.a.fc", d.n_embd_text, a)
    return specs


def _sinusoid_positions(length: int, channels: int) -> np.ndarray:
    """Whisper-style fixed positions: sin then cos of p times geometrically spaced frequencies (1 to 1e-4)."""
    half = channels // 2
    freqs = np.exp(-np.log(10000.0) * np.arange(half) / (half - 1))
    angles = np.arange(length)[:, None] * freqs[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


def write_projector_gguf(path: str | os.PathLike, dims: ProjectorDims, seed: int = 0) -> Path:
    """Writes a random-weight Qwen2.5-Omni projector (vision + audio towers) with F16 matrices, tensor by
    tensor. Keys: llama.cpp's `clip.*` ones, which libmtmd reads, and the `omnimem.qwen25_omni.*` ones that
    omnimem.cpp reads beyond them."""
    path = Path(path)
    w = gguf.GGUFWriter(path, "clip")
    w.add_type("mmproj")
    w.add_name(f"random {dims.name} f16")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_clip_projector_type("qwen2.5o")
    w.add_clip_has_vision_encoder(True)
    w.add_clip_has_audio_encoder(True)

    w.add_vision_projection_dim(dims.n_embd_text)
    w.add_vision_image_size(_IMAGE_SIZE)
    w.add_vision_patch_size(dims.patch_size)
    w.add_vision_embedding_length(dims.vision_width)
    w.add_vision_feed_forward_length(dims.vision_ff)
    w.add_vision_block_count(dims.vision_layers)
    w.add_vision_head_count(dims.vision_heads)
    w.add_vision_attention_layernorm_eps(1e-6)
    w.add_vision_image_mean(_IMAGE_MEAN)
    w.add_vision_image_std(_IMAGE_STD)
    w.add_vision_min_pixels(_IMAGE_MIN_PIXELS)
    w.add_vision_max_pixels(_IMAGE_MAX_PIXELS)
    w.add_vision_use_silu(True)
    # llama.cpp expresses the full-attention blocks as a period: block i is one iff (i + 1) % n == 0
    period = dims.fullatt_blocks[0] + 1
    if list(dims.fullatt_blocks) != [i for i in range(dims.vision_layers) if (i + 1) % period == 0]:
        raise ValueError(f"full-attention blocks {dims.fullatt_blocks} are not every n-th block")
    w.add_vision_n_wa_pattern(period)
    w.add_vision_spatial_merge_size(dims.spatial_merge)
    w.add_vision_window_size(dims.window_px)

    w.add_audio_projection_dim(dims.n_embd_text)
    w.add_audio_num_mel_bins(dims.n_mel)
    w.add_audio_embedding_length(dims.audio_width)
    w.add_audio_feed_forward_length(dims.audio_ff)
    w.add_audio_block_count(dims.audio_layers)
    w.add_audio_head_count(dims.audio_heads)
    w.add_audio_attention_layernorm_eps(1e-5)

    w.add_array("omnimem.qwen25_omni.vision_fullatt_block_indexes", list(dims.fullatt_blocks))
    w.add_uint32("omnimem.qwen25_omni.vision_temporal_patch_size", 2)
    w.add_uint32("omnimem.qwen25_omni.audio_n_window", dims.audio_n_window)

    specs = _projector_specs(dims)
    for name, shape, kind in specs:
        dtype = np.dtype(np.float16 if kind == _F16 else np.float32)
        w.add_tensor_info(name, shape, dtype, int(np.prod(shape)) * dtype.itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for index, (name, shape, kind) in enumerate(specs):
        rng = np.random.default_rng([seed, index])
        if kind == _F16:
            data = _random_matrix(rng, shape, gguf.GGMLQuantizationType.F16)
        elif kind == _POSITIONS:
            data = _sinusoid_positions(*shape)
        else:
            data = _random_vector(rng, name, shape)
        w.write_tensor_data(data)
    w.close()
    return path


def cached_projector_gguf(workdir: str | os.PathLike, dims: ProjectorDims, seed: int = 0, log=print) -> Path:
    """The path of the random F16 projector GGUF for (dims, seed) in workdir, written first if missing."""
    path = Path(workdir) / f"{dims.name}-random-v{FORMAT_VERSION}-f16-s{seed}.gguf"
    return _cached(path, lambda partial: write_projector_gguf(partial, dims, seed), log)
