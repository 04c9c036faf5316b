"""Qwen2.5-Omni: the thinker's vision and audio encoders as a llama.cpp multimodal projector file (mmproj).

The file follows llama.cpp's clip conventions, so its libmtmd loads it too: arch `clip`, `general.type` mmproj,
`clip.projector_type` "qwen2.5o" (libmtmd splits it into a Qwen2.5-VL vision and a Qwen2-Audio encoder), the
`clip.vision.*` / `clip.audio.*` hyperparameters, and tensors under `v.`, `a.` and `mm.`:

- Vision: the Conv3d patch kernel [C, 3, 2, 14, 14] is stored as its two temporal slices `v.patch_embd.weight`
  and `v.patch_embd.weight.1` (a 2-frame patch is the sum of two 2-D convolutions); `v.blk.N.{ln1, ln2, attn_q,
  attn_k, attn_v, attn_out, ffn_gate, ffn_up, ffn_down}` (RMSNorms without bias), `v.post_ln` (the merger's
  RMSNorm), `mm.0` / `mm.2` (the merger MLP).
- Audio: `a.conv1d.{1,2}` (biases stored 2-D, ggml shape [1, C], to broadcast over the [T, C] conv output),
  `a.position_embd` (the sinusoidal table, which checkpoints do not store: it is generated here),
  `a.blk.N.{ln1, ln2, attn_q, attn_k, attn_v, attn_out, ffn_up, ffn_down}` (k_proj has no bias), `a.post_ln`,
  `mm.a.fc` (the projection). `audio_tower.audio_bos_eos_token` is unused by the model and skipped.

Tensor types: norms, biases and the position table F32; convolution kernels F32 in an f32 file, F16 otherwise
(llama.cpp's converter stores the audio kernels F16 even in f32 files and the patch kernel F32 in bf16/q8_0
files; libmtmd takes either); matrices in the output type.

Keys a runtime needs beyond what llama.cpp's own converter writes. Files written by that converter lack them,
so a runtime reading one falls back to the values in parentheses (those of every released Qwen2.5-Omni):
- `clip.vision.spatial_merge_size` (2) and `clip.vision.window_size` (112 px): llama.cpp's own key names (its
  libmtmd reads the first, optionally, and hard-codes the window for Qwen2.5-VL).
- `clip.vision.image_min_pixels` / `image_max_pixels` (Qwen2VLImageProcessor's 3136 / 1003520), from
  preprocessor_config.json when the checkpoint has one.
- `omnimem.qwen25_omni.vision_fullatt_block_indexes` (the blocks i with (i + 1) % n_wa_pattern == 0),
  `...vision_temporal_patch_size` (2: the number of patch_embd slices), `...audio_n_window` (100: half the mel
  frames of one 2-second attention chunk), and the marker token ids, `position_id_per_seconds` (25) and
  `seconds_per_chunk` (2) that the text file carries too (llama.cpp's text file lacks them; look the tokens
  up in its vocabulary).
- The vision FFN width: take it from the ffn tensors' shapes rather than `clip.vision.feed_forward_length`,
  which llama.cpp's converter replaces by hidden_size whenever the vision config has an `embed_dim` key (Qwen2-VL's
  layout), as configs saved by early transformers versions of Qwen2.5-Omni may.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from gguf import GGUFWriter

from ..errors import ConversionError
from . import quant
from .checkpoint import Checkpoint, SubModel
from .qwen25_omni import add_omni_keys, split_config, thinker_prefix
from .writer import Plan, TensorSpec

__all__ = ["plan_projector", "sinusoid_table"]

GGUF_ARCH = "clip"
PROJECTOR_TYPE = "qwen2.5o"
# llama.cpp writes Qwen2-VL's default image size. Qwen2.5-VL takes any multiple of 28; libmtmd only warms up
# with it.
IMAGE_SIZE = 560
# Norm epsilons transformers hard-codes: the ViT's RMSNorms and the audio tower's nn.LayerNorm default.
VISION_EPS = 1e-6
AUDIO_EPS = 1e-5
AUDIO_CONV_KERNEL = 3
MAX_TIMESCALE = 10000.0
# Qwen2VLImageProcessor's defaults, used when the checkpoint has no preprocessor_config.json.
IMAGE_DEFAULTS = {"image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
                  "min_pixels": 56 * 56, "max_pixels": 28 * 28 * 1280}

# transformers' config defaults for the keys the released configs always set but a config may omit.
_VISION_DEFAULTS = dict(patch_size=14, temporal_patch_size=2, spatial_merge_size=2, window_size=112, in_channels=3,
                        fullatt_block_indexes=[7, 15, 23, 31], hidden_act="silu")
_AUDIO_DEFAULTS = dict(num_mel_bins=128, n_window=100, max_source_positions=1500, activation_function="gelu")


def _section(thinker: dict, key: str, defaults: dict) -> dict:
    cfg = thinker.get(key)
    if not isinstance(cfg, dict):
        raise ConversionError(f"config.json has no {key}; the projector needs a Qwen2.5-Omni thinker with its "
                              "vision and audio encoders")
    return {**defaults, **{k: v for k, v in cfg.items() if v is not None}}


def _require(cfg: dict, section: str, *keys: str) -> list[int]:
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise ConversionError(f"{section} lacks {', '.join(map(repr, missing))}; config.json is incomplete")
    return [int(cfg[k]) for k in keys]


def _window_pattern(fullatt: tuple[int, ...], depth: int) -> int:
    """n_wa_pattern for full-attention blocks that are every n-th block, the only layout llama.cpp expresses."""
    n = fullatt[0] + 1 if fullatt else 0
    if not fullatt or list(fullatt) != [i for i in range(depth) if (i + 1) % n == 0]:
        raise ConversionError(f"fullatt_block_indexes {list(fullatt)} is not every n-th of the {depth} vision blocks "
                              "(e.g. [7, 15, 23, 31]), the only layout the projector format can express")
    return n


@dataclass(frozen=True)
class VisionHParams:
    depth: int
    hidden_size: int
    intermediate_size: int
    n_heads: int
    out_hidden_size: int
    patch_size: int
    temporal_patch_size: int
    spatial_merge_size: int
    window_size: int
    in_channels: int
    fullatt_block_indexes: tuple[int, ...]
    n_wa_pattern: int  # llama.cpp's window-attention period n: block i attends over its whole frame iff (i+1) % n == 0

    @classmethod
    def from_config(cls, thinker: dict) -> "VisionHParams":
        cfg = _section(thinker, "vision_config", _VISION_DEFAULTS)
        dims = _require(cfg, "vision_config", "depth", "hidden_size", "intermediate_size", "num_heads",
                        "out_hidden_size", "patch_size", "temporal_patch_size", "spatial_merge_size",
                        "window_size", "in_channels")
        fullatt = tuple(int(i) for i in cfg["fullatt_block_indexes"])
        hp = cls(*dims, fullatt_block_indexes=fullatt, n_wa_pattern=_window_pattern(fullatt, depth=dims[0]))
        if cfg["hidden_act"] != "silu":
            raise ConversionError(f"vision_config.hidden_act is {cfg['hidden_act']!r}; Qwen2.5-Omni's ViT uses silu")
        if hp.temporal_patch_size != 2:
            raise ConversionError(f"vision temporal_patch_size is {hp.temporal_patch_size}; the projector format "
                                  "stores exactly 2 temporal kernel slices")
        if hp.hidden_size % hp.n_heads or (hp.hidden_size // hp.n_heads) % 4:
            raise ConversionError(f"vision hidden_size {hp.hidden_size} with {hp.n_heads} heads gives no head size "
                                  "divisible by 4, which the ViT's 2-D rotary embedding needs")
        return hp


@dataclass(frozen=True)
class AudioHParams:
    num_mel_bins: int
    d_model: int
    n_layers: int
    n_heads: int
    ffn_dim: int
    output_dim: int
    n_window: int
    max_source_positions: int

    @classmethod
    def from_config(cls, thinker: dict) -> "AudioHParams":
        cfg = _section(thinker, "audio_config", _AUDIO_DEFAULTS)
        hp = cls(*_require(cfg, "audio_config", "num_mel_bins", "d_model", "encoder_layers", "encoder_attention_heads",
                           "encoder_ffn_dim", "output_dim", "n_window", "max_source_positions"))
        if cfg["activation_function"] != "gelu":
            raise ConversionError(f"audio_config.activation_function is {cfg['activation_function']!r}; "
                                  "Qwen2.5-Omni's audio encoder uses gelu")
        if hp.d_model % 2 or hp.d_model < 4 or hp.d_model % hp.n_heads:
            raise ConversionError(f"audio d_model {hp.d_model} must be even, at least 4 and divisible by its "
                                  f"{hp.n_heads} heads")
        return hp


def sinusoid_table(length: int, channels: int) -> np.ndarray:
    """The audio encoder's sinusoidal positions [length, channels]: row p is sin(p * f_i) for i < channels/2,
    then cos(p * f_i), with f_i = MAX_TIMESCALE ** (-i / (channels/2 - 1)).

    The frequencies and angles are rounded to float32 as transformers computes them (its table is the truth,
    and angles up to 1500 rad lose digits in float32); exp, sin and cos are evaluated in float64.
    """
    half = channels // 2
    step = np.float32(np.log(MAX_TIMESCALE) / (half - 1))
    freqs = np.exp((-step * np.arange(half, dtype=np.float32)).astype(np.float64)).astype(np.float32)
    angles = (np.arange(length, dtype=np.float32)[:, None] * freqs[None, :]).astype(np.float64)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


def _spec(model: SubModel, gguf_name: str, hf_name: str, shape: tuple[int, ...],
          role: str = quant.WEIGHT) -> TensorSpec:
    model.expect(hf_name, shape)
    return TensorSpec(gguf_name, shape, lambda: model.load(hf_name), role)


def _linear(model: SubModel, gguf_name: str, hf_name: str, n_out: int, n_in: int,
            bias: bool = True) -> list[TensorSpec]:
    specs = [_spec(model, f"{gguf_name}.weight", f"{hf_name}.weight", (n_out, n_in))]
    if bias:
        specs.append(_spec(model, f"{gguf_name}.bias", f"{hf_name}.bias", (n_out,)))
    return specs


def _vision_tensors(hp: VisionHParams, model: SubModel) -> list[TensorSpec]:
    c, ff, merged = hp.hidden_size, hp.intermediate_size, hp.hidden_size * hp.spatial_merge_size ** 2
    kernel = "visual.patch_embed.proj.weight"
    model.expect(kernel, (c, hp.in_channels, hp.temporal_patch_size, hp.patch_size, hp.patch_size))
    slice_shape = (c, hp.in_channels, hp.patch_size, hp.patch_size)
    specs = [TensorSpec("v.patch_embd.weight" + suffix, slice_shape, lambda t=t: model.load(kernel)[:, :, t],
                        quant.CONV) for t, suffix in enumerate(("", ".1"))]
    for i in range(hp.depth):
        hf, blk = f"visual.blocks.{i}.", f"v.blk.{i}."
        specs += [_spec(model, blk + "ln1.weight", hf + "norm1.weight", (c,)),
                  _spec(model, blk + "ln2.weight", hf + "norm2.weight", (c,))]
        for gguf_name, hf_name in (("attn_q", "attn.q"), ("attn_k", "attn.k"), ("attn_v", "attn.v"),
                                   ("attn_out", "attn.proj")):
            specs += _linear(model, blk + gguf_name, hf + hf_name, c, c)
        specs += _linear(model, blk + "ffn_gate", hf + "mlp.gate_proj", ff, c)
        specs += _linear(model, blk + "ffn_up", hf + "mlp.up_proj", ff, c)
        specs += _linear(model, blk + "ffn_down", hf + "mlp.down_proj", c, ff)
    specs.append(_spec(model, "v.post_ln.weight", "visual.merger.ln_q.weight", (c,)))
    specs += _linear(model, "mm.0", "visual.merger.mlp.0", merged, merged)
    specs += _linear(model, "mm.2", "visual.merger.mlp.2", hp.out_hidden_size, merged)
    return specs


def _audio_tensors(hp: AudioHParams, model: SubModel) -> list[TensorSpec]:
    d, ff = hp.d_model, hp.ffn_dim
    specs = []
    for n, n_in in ((1, hp.num_mel_bins), (2, d)):
        hf = f"audio_tower.conv{n}"
        specs.append(_spec(model, f"a.conv1d.{n}.weight", hf + ".weight", (d, n_in, AUDIO_CONV_KERNEL), quant.CONV))
        model.expect(hf + ".bias", (d,))
        specs.append(TensorSpec(f"a.conv1d.{n}.bias", (d, 1), lambda b=hf + ".bias": model.load(b)[:, None],
                                quant.KEEP_F32))
    specs.append(TensorSpec("a.position_embd.weight", (hp.max_source_positions, d),
                            lambda: sinusoid_table(hp.max_source_positions, d), quant.KEEP_F32))
    for i in range(hp.n_layers):
        hf, blk = f"audio_tower.layers.{i}.", f"a.blk.{i}."
        specs += _linear(model, blk + "attn_q", hf + "self_attn.q_proj", d, d)
        specs += _linear(model, blk + "attn_k", hf + "self_attn.k_proj", d, d, bias=False)
        specs += _linear(model, blk + "attn_v", hf + "self_attn.v_proj", d, d)
        specs += _linear(model, blk + "attn_out", hf + "self_attn.out_proj", d, d)
        for gguf_name, hf_name in (("ln1", "self_attn_layer_norm"), ("ln2", "final_layer_norm")):
            specs += [_spec(model, f"{blk}{gguf_name}.{p}", f"{hf}{hf_name}.{p}", (d,)) for p in ("weight", "bias")]
        specs += _linear(model, blk + "ffn_up", hf + "fc1", ff, d)
        specs += _linear(model, blk + "ffn_down", hf + "fc2", d, ff)
    specs += [_spec(model, f"a.post_ln.{p}", f"audio_tower.ln_post.{p}", (d,)) for p in ("weight", "bias")]
    specs += _linear(model, "mm.a.fc", "audio_tower.proj", hp.output_dim, d)
    return specs


def _image_processing(ckpt: Checkpoint) -> dict:
    """Normalisation and pixel limits from preprocessor_config.json, else Qwen2VLImageProcessor's defaults."""
    path = ckpt.dir / "preprocessor_config.json"
    if not path.is_file():
        return dict(IMAGE_DEFAULTS)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConversionError(f"cannot read {path}: {e}; re-download it or delete it to use the defaults") from None
    size = cfg.get("size") or {}
    found = {"image_mean": cfg.get("image_mean"), "image_std": cfg.get("image_std"),
             "min_pixels": cfg.get("min_pixels", size.get("shortest_edge")),
             "max_pixels": cfg.get("max_pixels", size.get("longest_edge"))}
    out = {k: IMAGE_DEFAULTS[k] if v is None else v for k, v in found.items()}
    if len(out["image_mean"]) != 3 or len(out["image_std"]) != 3:
        raise ConversionError(f"{path} gives image_mean/image_std without 3 (RGB) entries; fix or delete it")
    return out


def _check_towers(ckpt: Checkpoint, prefix: str) -> None:
    names = ckpt.names()
    for tower, what in (("visual.", "vision"), ("audio_tower.", "audio")):
        if not any(n.startswith(prefix + tower) for n in names):
            raise ConversionError(f"checkpoint {ckpt.dir} has no {what} encoder ({prefix}{tower}* tensors), so it has "
                                  "no projector file; convert without --mmproj or use the full Qwen2.5-Omni checkpoint")


def plan_projector(ckpt: Checkpoint) -> Plan:
    """The mmproj GGUF of a Qwen2.5-Omni checkpoint's vision and audio encoders, fully validated."""
    thinker, text = split_config(ckpt.config)
    prefix = thinker_prefix(ckpt)
    _check_towers(ckpt, prefix)
    vision, audio = VisionHParams.from_config(thinker), AudioHParams.from_config(thinker)
    n_embd_text = int(text.get("hidden_size", 0))
    for what, dim in (("vision out_hidden_size", vision.out_hidden_size), ("audio output_dim", audio.output_dim)):
        if dim != n_embd_text:
            raise ConversionError(f"{what} {dim} differs from the text hidden_size {n_embd_text}; config.json is "
                                  "inconsistent")
    image = _image_processing(ckpt)
    model = SubModel(ckpt, prefix)
    tensors = _vision_tensors(vision, model) + _audio_tensors(audio, model)

    def metadata(w: GGUFWriter) -> None:
        w.add_type("mmproj")
        w.add_clip_projector_type(PROJECTOR_TYPE)
        w.add_clip_has_vision_encoder(True)
        w.add_clip_has_audio_encoder(True)
        w.add_vision_projection_dim(vision.out_hidden_size)
        w.add_vision_image_size(IMAGE_SIZE)
        w.add_vision_patch_size(vision.patch_size)
        w.add_vision_embedding_length(vision.hidden_size)
        w.add_vision_feed_forward_length(vision.intermediate_size)
        w.add_vision_block_count(vision.depth)
        w.add_vision_head_count(vision.n_heads)
        w.add_vision_attention_layernorm_eps(VISION_EPS)
        w.add_vision_image_mean([float(x) for x in image["image_mean"]])
        w.add_vision_image_std([float(x) for x in image["image_std"]])
        w.add_vision_min_pixels(int(image["min_pixels"]))
        w.add_vision_max_pixels(int(image["max_pixels"]))
        w.add_vision_use_silu(True)
        w.add_vision_n_wa_pattern(vision.n_wa_pattern)
        w.add_vision_spatial_merge_size(vision.spatial_merge_size)
        w.add_vision_window_size(vision.window_size)
        w.add_audio_projection_dim(audio.output_dim)
        w.add_audio_num_mel_bins(audio.num_mel_bins)
        w.add_audio_embedding_length(audio.d_model)
        w.add_audio_feed_forward_length(audio.ffn_dim)
        w.add_audio_block_count(audio.n_layers)
        w.add_audio_head_count(audio.n_heads)
        w.add_audio_attention_layernorm_eps(AUDIO_EPS)
        w.add_string("omnimem.source.architecture", ckpt.config.get("architectures", ["?"])[0])
        w.add_array("omnimem.qwen25_omni.vision_fullatt_block_indexes", list(vision.fullatt_block_indexes))
        w.add_uint32("omnimem.qwen25_omni.vision_temporal_patch_size", vision.temporal_patch_size)
        w.add_uint32("omnimem.qwen25_omni.audio_n_window", audio.n_window)
        add_omni_keys(w, thinker)

    return Plan(GGUF_ARCH, ckpt.dir.name, metadata, tensors)
