"""Qwen2.5-Omni: the thinker's text decoder as a llama.cpp `qwen2vl` GGUF (M-RoPE Qwen2 layers).

Accepts the full Qwen2.5-Omni checkpoint (tensors under `thinker.`, text config in thinker_config.text_config)
and a standalone thinker saved by save_pretrained (no prefix, text_config at the top). Vision, audio, talker
and token2wav tensors are not part of the text file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gguf import GGUFWriter

from ..errors import ConversionError
from .checkpoint import Checkpoint, SubModel
from .tokenizer import add_tokenizer
from .writer import Plan, TensorSpec

ARCHITECTURES = (
    "Qwen2_5OmniForConditionalGeneration",
    "Qwen2_5OmniThinkerForConditionalGeneration",
    "Qwen2_5OmniModel",
)
GGUF_ARCH = "qwen2vl"
N_ROPE_SECTIONS = 4  # llama.cpp's M-RoPE takes 4 sections; Qwen2.5 uses 3 and a trailing 0

# Omni marker token ids and TMRoPE timing from the thinker config, under `omnimem.qwen25_omni.`, for runtimes
# that want them without a vocab lookup (files from llama.cpp's converter lack them).
_OMNI_KEYS = {
    "audio_token_index": "audio_token_id",
    "image_token_index": "image_token_id",
    "video_token_index": "video_token_id",
    "audio_start_token_id": "audio_bos_token_id",
    "audio_end_token_id": "audio_eos_token_id",
    "vision_start_token_id": "vision_bos_token_id",
    "vision_end_token_id": "vision_eos_token_id",
    "position_id_per_seconds": "position_id_per_seconds",
    "seconds_per_chunk": "seconds_per_chunk",
}


@dataclass(frozen=True)
class TextHParams:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    context_length: int
    rope_theta: float
    rms_norm_eps: float
    mrope_section: tuple[int, ...]
    bos_token_id: int | None

    @classmethod
    def from_config(cls, text: dict) -> "TextHParams":
        rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
        try:
            hidden, n_heads = int(text["hidden_size"]), int(text["num_attention_heads"])
            hp = cls(
                vocab_size=int(text["vocab_size"]),
                hidden_size=hidden,
                intermediate_size=int(text["intermediate_size"]),
                n_layers=int(text["num_hidden_layers"]),
                n_heads=n_heads,
                n_kv_heads=int(text.get("num_key_value_heads") or n_heads),
                head_dim=int(text.get("head_dim") or hidden // n_heads),
                context_length=int(text.get("max_position_embeddings", 32768)),
                # 4.x keeps rope_theta at the top of the text config, 5.x inside rope_parameters
                rope_theta=float(rope.get("rope_theta", text.get("rope_theta", 1e6))),
                rms_norm_eps=float(text.get("rms_norm_eps", 1e-6)),
                mrope_section=tuple(int(s) for s in rope["mrope_section"]),
                bos_token_id=text.get("bos_token_id"),
            )
        except KeyError as e:
            raise ConversionError(f"the text config lacks {e.args[0]!r}; config.json is incomplete") from None
        if 2 * sum(hp.mrope_section) != hp.head_dim or len(hp.mrope_section) > N_ROPE_SECTIONS:
            raise ConversionError(f"mrope_section {list(hp.mrope_section)} does not split head_dim {hp.head_dim} "
                                  f"(its sum must be head_dim/2, at most {N_ROPE_SECTIONS} entries)")
        return hp


def split_config(config: dict) -> tuple[dict, dict]:
    """(thinker config, text config) from either checkpoint form."""
    thinker = config.get("thinker_config", config)
    text = thinker.get("text_config")
    if not isinstance(text, dict):
        raise ConversionError("config.json has no text_config (nor thinker_config.text_config); "
                              "it is not a Qwen2.5-Omni checkpoint")
    return thinker, text


def thinker_prefix(ckpt: Checkpoint) -> str:
    """The name prefix of the thinker's tensors: `thinker.` in the full model, none in a standalone thinker."""
    return "thinker." if any(n.startswith("thinker.") for n in ckpt.names()) else ""


def add_omni_keys(w: GGUFWriter, thinker: dict) -> None:
    """The `omnimem.qwen25_omni.*` marker token ids and TMRoPE timing present in the thinker config."""
    for hf_key, key in _OMNI_KEYS.items():
        if thinker.get(hf_key) is not None:
            w.add_uint32(f"omnimem.qwen25_omni.{key}", int(thinker[hf_key]))


def _layer_tensors(hp: TextHParams, i: int) -> list[tuple[str, str, tuple[int, ...]]]:
    """(GGUF name, HF name, expected numpy shape) of decoder layer i."""
    d, q, kv, ff = hp.hidden_size, hp.n_heads * hp.head_dim, hp.n_kv_heads * hp.head_dim, hp.intermediate_size
    hf, blk = f"model.layers.{i}.", f"blk.{i}."
    return [
        (blk + "attn_norm.weight", hf + "input_layernorm.weight", (d,)),
        (blk + "attn_q.weight", hf + "self_attn.q_proj.weight", (q, d)),
        (blk + "attn_q.bias", hf + "self_attn.q_proj.bias", (q,)),
        (blk + "attn_k.weight", hf + "self_attn.k_proj.weight", (kv, d)),
        (blk + "attn_k.bias", hf + "self_attn.k_proj.bias", (kv,)),
        (blk + "attn_v.weight", hf + "self_attn.v_proj.weight", (kv, d)),
        (blk + "attn_v.bias", hf + "self_attn.v_proj.bias", (kv,)),
        (blk + "attn_output.weight", hf + "self_attn.o_proj.weight", (d, q)),
        (blk + "ffn_norm.weight", hf + "post_attention_layernorm.weight", (d,)),
        (blk + "ffn_gate.weight", hf + "mlp.gate_proj.weight", (ff, d)),
        (blk + "ffn_up.weight", hf + "mlp.up_proj.weight", (ff, d)),
        (blk + "ffn_down.weight", hf + "mlp.down_proj.weight", (d, ff)),
    ]


def _text_table(hp: TextHParams, untied_head: bool) -> list[tuple[str, str, tuple[int, ...]]]:
    """(GGUF name, HF name, expected numpy shape) of every tensor of the text file."""
    table = [("token_embd.weight", "model.embed_tokens.weight", (hp.vocab_size, hp.hidden_size))]
    for i in range(hp.n_layers):
        table += _layer_tensors(hp, i)
    table.append(("output_norm.weight", "model.norm.weight", (hp.hidden_size,)))
    # Without lm_head.weight the head is tied; llama.cpp then reuses token_embd, so nothing is written.
    if untied_head:
        table.append(("output.weight", "lm_head.weight", (hp.vocab_size, hp.hidden_size)))
    return table


def _text_tensors(hp: TextHParams, model: SubModel) -> list[TensorSpec]:
    table = _text_table(hp, model.has("lm_head.weight"))
    specs = []
    for gguf_name, hf_name, expected in table:
        model.expect(hf_name, expected)
        specs.append(TensorSpec(gguf_name, expected, lambda n=hf_name: model.load(n)))
    return specs


def plan_text(ckpt: Checkpoint) -> Plan:
    """The text-decoder GGUF of a Qwen2.5-Omni checkpoint, fully validated."""
    thinker, text = split_config(ckpt.config)
    hp = TextHParams.from_config(text)
    model = SubModel(ckpt, thinker_prefix(ckpt))

    def metadata(w: GGUFWriter) -> None:
        w.add_context_length(hp.context_length)
        w.add_embedding_length(hp.hidden_size)
        w.add_block_count(hp.n_layers)
        w.add_feed_forward_length(hp.intermediate_size)
        w.add_head_count(hp.n_heads)
        w.add_head_count_kv(hp.n_kv_heads)
        if hp.head_dim != hp.hidden_size // hp.n_heads:
            w.add_key_length(hp.head_dim)
            w.add_value_length(hp.head_dim)
        w.add_rope_freq_base(hp.rope_theta)
        w.add_layer_norm_rms_eps(hp.rms_norm_eps)
        w.add_rope_dimension_sections(list(hp.mrope_section) + [0] * (N_ROPE_SECTIONS - len(hp.mrope_section)))
        w.add_string("omnimem.source.architecture", ckpt.config.get("architectures", ["?"])[0])
        add_omni_keys(w, thinker)
        add_tokenizer(w, ckpt.dir, hp.vocab_size, pre="qwen2", default_bos_id=hp.bos_token_id)

    return Plan(GGUF_ARCH, ckpt.dir.name, metadata, _text_tensors(hp, model))


def read_text_weights(path, config: dict) -> dict:
    """The text decoder's weights in a text GGUF written for the checkpoint config `config` (config.json of
    either form), as {HF tensor name: float32 array}: the way back from a converted file to a checkpoint,
    e.g. to train a shipped model further. A quantized file gives its dequantized weights. Raises
    ConversionError when the file's tensors do not have the config's names and shapes."""
    from gguf import GGMLQuantizationType, GGUFReader, quants

    hp = TextHParams.from_config(split_config(config)[1])
    tensors = {t.name: t for t in GGUFReader(path).tensors}
    weights = {}
    for gguf_name, hf_name, shape in _text_table(hp, "output.weight" in tensors):
        t = tensors.get(gguf_name)
        if t is None:
            raise ConversionError(f"{path} has no tensor {gguf_name}; it is not a text file of this model")
        data = t.data if t.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16) \
            else quants.dequantize(t.data, t.tensor_type)
        data = np.asarray(data, dtype=np.float32).reshape(tuple(int(n) for n in reversed(t.shape)))
        if data.shape != shape:
            raise ConversionError(f"{path}: {gguf_name} has shape {data.shape}, the config makes it {shape}; "
                                  "the file was converted from a model of another size")
        weights[hf_name] = data
    if "lm_head.weight" not in weights:     # a tied head is the embedding table
        weights["lm_head.weight"] = weights["model.embed_tokens.weight"]
    return weights
