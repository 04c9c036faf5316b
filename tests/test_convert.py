"""HF checkpoint -> GGUF conversion, checked against the checkpoint itself (config.json, safetensors,
tokenizer.json) read independently here, and `omnimem info` on the result."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, TokenType, quants
from safetensors.numpy import load_file, save_file

import tiny_models
from omnimem_cpp.convert import OUTTYPES, convert_checkpoint
from omnimem_cpp.errors import ConversionError, ModelFileError
from omnimem_cpp.gguf_info import describe, format_info


def _fields(reader: GGUFReader) -> dict:
    return {name: field.contents() for name, field in reader.fields.items()}




def _text_config(ckpt_dir) -> dict:
    cfg = json.loads((ckpt_dir / "config.json").read_text())
    return cfg.get("thinker_config", cfg)["text_config"]


def _expected_tensors(text: dict, tied: bool) -> dict:
    """GGUF name -> (HF name, numpy-order shape), written out from llama.cpp's Qwen2-VL naming."""
    d, ff, v = text["hidden_size"], text["intermediate_size"], text["vocab_size"]
    hd = d // text["num_attention_heads"]
    q, kv = text["num_attention_heads"] * hd, text["num_key_value_heads"] * hd
    out = {"token_embd.weight": ("model.embed_tokens.weight", (v, d)), "output_norm.weight": ("model.norm.weight", (d,))}
    if not tied:
        out["output.weight"] = ("lm_head.weight", (v, d))
    for i in range(text["num_hidden_layers"]):
        hf = f"model.layers.{i}."
        for gguf_name, hf_name, shape in [
            ("attn_norm.weight", "input_layernorm.weight", (d,)), ("ffn_norm.weight", "post_attention_layernorm.weight", (d,)),
            ("attn_q.weight", "self_attn.q_proj.weight", (q, d)), ("attn_q.bias", "self_attn.q_proj.bias", (q,)),
            ("attn_k.weight", "self_attn.k_proj.weight", (kv, d)), ("attn_k.bias", "self_attn.k_proj.bias", (kv,)),
            ("attn_v.weight", "self_attn.v_proj.weight", (kv, d)), ("attn_v.bias", "self_attn.v_proj.bias", (kv,)),
            ("attn_output.weight", "self_attn.o_proj.weight", (d, q)), ("ffn_gate.weight", "mlp.gate_proj.weight", (ff, d)),
            ("ffn_up.weight", "mlp.up_proj.weight", (ff, d)), ("ffn_down.weight", "mlp.down_proj.weight", (d, ff)),
        ]:
            out[f"blk.{i}.{gguf_name}"] = (hf + hf_name, shape)
    return out


FORMS = [
    pytest.param("base", {}, id="standalone"),
    pytest.param("base", {"full_checkpoint": True, "shards": 3}, id="full-sharded"),
    pytest.param("mha_tied", {}, id="tied"),
    pytest.param("gqa4", {"shards": 2}, id="gqa4-sharded"),
]


@pytest.mark.parametrize("config, kw", FORMS)
def test_f32_file_matches_checkpoint(tiny_thinker, tiny_gguf, config, kw):
    ckpt = tiny_thinker(config, **kw)
    text = _text_config(ckpt)
    reader = GGUFReader(tiny_gguf(config, "f32", **kw))
    f = _fields(reader)
    assert f["general.architecture"] == "qwen2vl"
    assert f["general.file_type"] == 0
    assert "general.quantization_version" not in f
    expected_keys = {
        "qwen2vl.context_length": text["max_position_embeddings"], "qwen2vl.embedding_length": text["hidden_size"],
        "qwen2vl.block_count": text["num_hidden_layers"], "qwen2vl.feed_forward_length": text["intermediate_size"],
        "qwen2vl.attention.head_count": text["num_attention_heads"],
        "qwen2vl.attention.head_count_kv": text["num_key_value_heads"],
        "qwen2vl.rope.dimension_sections": text["rope_scaling"]["mrope_section"] + [0],
    }
    assert {k: f[k] for k in expected_keys} == expected_keys
    assert f["qwen2vl.rope.freq_base"] == pytest.approx(text["rope_theta"])
    assert f["qwen2vl.attention.layer_norm_rms_epsilon"] == pytest.approx(text["rms_norm_eps"])

    expected = _expected_tensors(text, tied=text["tie_word_embeddings"])
    assert sorted(t.name for t in reader.tensors) == sorted(expected)
    hf = tiny_models.checkpoint_tensors(ckpt)
    for t in reader.tensors:
        hf_name, shape = expected[t.name]
        assert tuple(reversed(t.shape.tolist())) == shape, t.name  # GGUF lists ne0 (innermost) first
        assert t.tensor_type == T.F32
        np.testing.assert_array_equal(np.asarray(t.data).reshape(shape), hf[hf_name], err_msg=t.name)


def test_full_and_standalone_forms_give_the_same_file_content(tiny_gguf):
    a = GGUFReader(tiny_gguf("base", "f16"))
    b = GGUFReader(tiny_gguf("base", "f16", full_checkpoint=True, shards=3))
    assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
    for ta, tb in zip(a.tensors, b.tensors):
        np.testing.assert_array_equal(ta.data, tb.data)
    assert _fields(b)["omnimem.source.architecture"] == "Qwen2_5OmniForConditionalGeneration"
    assert _fields(a)["omnimem.qwen25_omni.vision_bos_token_id"] == tiny_models.TOKEN_IDS["<|vision_bos|>"]


@pytest.mark.parametrize("outtype", OUTTYPES)
def test_outtype_decides_tensor_types(tiny_gguf, outtype):
    wanted = {"f32": T.F32, "f16": T.F16, "bf16": T.BF16, "q8_0": T.Q8_0, "q4_0": T.Q4_0}[outtype]
    reader = GGUFReader(tiny_gguf("odd_ffn", outtype))
    f = _fields(reader)
    assert f["general.file_type"] == {"f32": 0, "f16": 1, "bf16": 32, "q8_0": 7, "q4_0": 2}[outtype]
    assert ("general.quantization_version" in f) == (outtype in ("q8_0", "q4_0"))
    for t in reader.tensors:
        if len(t.shape) == 1:
            assert t.tensor_type == T.F32, t.name
        elif t.name.endswith("ffn_down.weight") and outtype in ("q8_0", "q4_0"):
            assert t.tensor_type == T.F16, f"{t.name}: rows of 200 are not whole blocks of 32, so F16"
        else:
            assert t.tensor_type == wanted, t.name


# Per-element error bounds of each encoding, from its formula; `amax` is the largest |x| in a 32-element block.
# F16/BF16 round to 11/8 significant bits. Q8_0 stores round(x/d) with d = amax/127 (an f16), so the error is at
# most d/2 plus d's own rounding times 127. Q4_0 uses d = amax/8 and clips the top code, so up to d (plus d's
# rounding times 8).
@pytest.mark.parametrize("outtype, bound", [
    ("f16", lambda x, amax: np.abs(x) * 2.0**-11 + 1e-7),
    ("bf16", lambda x, amax: np.abs(x) * 2.0**-8),
    ("q8_0", lambda x, amax: amax / 127 / 2 + amax * 2.0**-10),
    ("q4_0", lambda x, amax: amax / 8 + amax * 2.0**-10),
])
def test_dequantized_tensors_stay_within_formula_error(tiny_thinker, tiny_gguf, outtype, bound):
    hf = tiny_models.checkpoint_tensors(tiny_thinker("base"))
    expected = _expected_tensors(_text_config(tiny_thinker("base")), tied=False)
    for t in GGUFReader(tiny_gguf("base", outtype)).tensors:
        hf_name, shape = expected[t.name]
        x = hf[hf_name]
        got = quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(shape)
        blocks = x.reshape(-1, 32) if x.ndim == 2 else x.reshape(1, -1)
        amax = np.repeat(np.abs(blocks).max(axis=1), blocks.shape[1]).reshape(x.shape)
        assert np.all(np.abs(got - x) <= bound(x, amax)), t.name


def test_tokenizer_keys_match_tokenizer_json(tiny_thinker, tiny_gguf):
    ckpt = tiny_thinker("base")
    tok = json.loads((ckpt / "tokenizer.json").read_text())
    tok_cfg = json.loads((ckpt / "tokenizer_config.json").read_text())
    f = _fields(GGUFReader(tiny_gguf("base", "f32")))
    vocab_size = _text_config(ckpt)["vocab_size"]
    assert (f["tokenizer.ggml.model"], f["tokenizer.ggml.pre"]) == ("gpt2", "qwen2")
    tokens, types = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == vocab_size
    for text, i in tok["model"]["vocab"].items():
        assert (tokens[i], types[i]) == (text, TokenType.NORMAL)
    for added in tok["added_tokens"]:
        want = TokenType.CONTROL if added["special"] else TokenType.USER_DEFINED
        assert (tokens[added["id"]], types[added["id"]]) == (added["content"], want)
    for i in range(tiny_models.TOKENIZER_SIZE, vocab_size):
        assert (tokens[i], types[i]) == (f"[PAD{i}]", TokenType.UNUSED)
    assert f["tokenizer.ggml.merges"] == [" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]]
    assert f["tokenizer.ggml.eos_token_id"] == tiny_models.TOKEN_IDS["<|im_end|>"]
    assert f["tokenizer.ggml.padding_token_id"] == tiny_models.TOKEN_IDS["<|endoftext|>"]
    assert f["tokenizer.ggml.bos_token_id"] == _text_config(ckpt)["bos_token_id"]
    assert f["tokenizer.ggml.add_bos_token"] is False
    assert f["tokenizer.chat_template"] == tok_cfg["chat_template"]


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_other_checkpoint_file_forms_convert_the_same(tiny_thinker, tiny_gguf, tmp_path):
    """Merges stored as strings, the template in chat_template.jinja, the 5.x rope_parameters config, BF16 weights."""
    import torch
    from safetensors.torch import save_file as save_torch

    ckpt = _copy(tiny_thinker("base"), tmp_path / "variant")
    _edit_json(ckpt / "tokenizer.json", lambda t: t["model"].update(merges=[" ".join(m) for m in t["model"]["merges"]]))
    template = json.loads((ckpt / "tokenizer_config.json").read_text()).pop("chat_template")
    _edit_json(ckpt / "tokenizer_config.json", lambda c: c.pop("chat_template"))
    (ckpt / "chat_template.jinja").write_text(template)

    def to_rope_parameters(cfg):
        text = cfg["text_config"]
        text["rope_parameters"] = {"rope_type": "default", "rope_theta": text.pop("rope_theta"),
                                   "mrope_section": text.pop("rope_scaling")["mrope_section"]}
    _edit_json(ckpt / "config.json", to_rope_parameters)
    weights = load_file(ckpt / "model.safetensors")
    save_torch({k: torch.from_numpy(v).bfloat16() for k, v in weights.items()}, ckpt / "model.safetensors")

    ref, got = GGUFReader(tiny_gguf("base", "f32")), GGUFReader(convert_checkpoint(ckpt, tmp_path / "v.gguf", "f32", progress=False))
    ref_f, got_f = _fields(ref), _fields(got)
    assert {k: v for k, v in got_f.items() if k != "general.name"} == {k: v for k, v in ref_f.items() if k != "general.name"}
    for t in got.tensors:
        want = torch.from_numpy(weights[_expected_tensors(_text_config(tiny_thinker("base")), False)[t.name][0]])
        np.testing.assert_array_equal(np.asarray(t.data).reshape(want.shape), want.bfloat16().float().numpy())


def test_checkpoint_without_tokenizer_writes_no_tokenizer_keys(tiny_thinker, tmp_path):
    out = convert_checkpoint(tiny_thinker("gqa4", tokenizer=False), tmp_path / "m.gguf", "f16", progress=False)
    assert not any(k.startswith("tokenizer.") for k in GGUFReader(out).fields)


def _drop_tensor(ckpt, name):
    weights = load_file(ckpt / "model.safetensors")
    del weights[name]
    save_file(weights, ckpt / "model.safetensors")


@pytest.mark.parametrize("breakage, message", [
    (lambda d: d / "nowhere", "does not exist"),
    (lambda d: (d / "config.json").unlink() or d, "no config.json"),
    (lambda d: _edit_json(d / "config.json", lambda c: c.update(architectures=["LlamaForCausalLM"])) or d,
     "unsupported architecture LlamaForCausalLM; supported: Qwen2_5OmniForConditionalGeneration"),
    (lambda d: (d / "model.safetensors").rename(d / "pytorch_model.bin").parent, "re-save a .bin"),
    (lambda d: _drop_tensor(d, "model.layers.1.mlp.up_proj.weight") or d, "lacks tensor model.layers.1.mlp.up_proj.weight"),
    (lambda d: _edit_json(d / "config.json", lambda c: c["text_config"].update(intermediate_size=96)) or d,
     "tensor model.layers.0.mlp.gate_proj.weight has shape [128, 64], expected [96, 64]"),
    (lambda d: _edit_json(d / "config.json", lambda c: c["text_config"].update(vocab_size=512)) or d,
     "shape [1024, 64], expected [512, 64]"),
], ids=["no-dir", "no-config", "architecture", "bin-only", "missing-tensor", "shape", "vocab"])
def test_unconvertible_checkpoints_raise_one_line_errors(tiny_thinker, tmp_path, breakage, message):
    ckpt = breakage(_copy(tiny_thinker("base"), tmp_path / "broken"))
    out = tmp_path / "out.gguf"
    with pytest.raises(ConversionError) as err:
        convert_checkpoint(ckpt, out, "f16", progress=False)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_unknown_outtype_is_refused(tiny_thinker, tmp_path):
    with pytest.raises(ConversionError, match=r"unknown output type 'q4_k'; choose one of f32, f16, bf16, q8_0, q4_0"):
        convert_checkpoint(tiny_thinker("base"), tmp_path / "m.gguf", "q4_k", progress=False)


def test_info_describes_a_converted_file(tiny_gguf):
    path = tiny_gguf("odd_ffn", "q8_0")
    d = describe(path)
    assert (d["architecture"], d["file_type_name"]) == ("qwen2vl", "MOSTLY_Q8_0")
    assert d["hyperparameters"]["block_count"] == 2
    assert d["hyperparameters"]["rope.dimension_sections"] == [2, 3, 3, 0]
    assert d["tokenizer"]["n_tokens"] == 1024 and d["tokenizer"]["model"] == "gpt2"
    assert d["tensor_types"] == {"F16": 2, "F32": 11, "Q8_0": 14}
    assert d["n_tensors"] == sum(d["tensor_types"].values())
    assert 0 < d["tensor_bytes"] < d["file_size"] == path.stat().st_size
    text = format_info(d)
    assert "architecture:  qwen2vl" in text and "Q8_0 x14" in text and "block_count = 2" in text


def test_info_rejects_missing_foreign_and_truncated_files(tiny_gguf, tmp_path):
    not_gguf = tmp_path / "weights.bin"
    not_gguf.write_bytes(b"PK\x03\x04 not a gguf")
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(tiny_gguf("base", "f32").read_bytes()[:-5000])
    for path, message in [(tmp_path / "absent.gguf", "does not exist"), (not_gguf, "not a GGUF file"), (truncated, "truncated")]:
        with pytest.raises(ModelFileError, match=message):
            describe(path)


@pytest.mark.parametrize("config, kw", FORMS)
@pytest.mark.parametrize("outtype", ["f32", "f16", "q8_0"])
def test_text_weights_read_back_as_the_checkpoints(tiny_thinker, tiny_gguf, config, kw, outtype):
    """The way back (GGUF -> HF names) gives every text tensor of the checkpoint: exactly from F32, within
    the storage type's rounding otherwise (the bounds above), and a tied head as the embedding table."""
    from omnimem_cpp.convert.qwen25_omni import read_text_weights

    ckpt = tiny_thinker(config, **kw)
    hf = tiny_models.checkpoint_tensors(ckpt)
    weights = read_text_weights(tiny_gguf(config, outtype, **kw), json.loads((ckpt / "config.json").read_text()))
    text_names = {n for n in hf if n.startswith(("model.", "lm_head."))}
    assert set(weights) == text_names | {"lm_head.weight"}
    for name, w in weights.items():
        x = hf["model.embed_tokens.weight"] if name == "lm_head.weight" and name not in hf else hf[name]
        assert w.dtype == np.float32 and w.shape == x.shape, name
        blocks = x.reshape(-1, 32) if x.ndim == 2 else x.reshape(1, -1)
        amax = np.repeat(np.abs(blocks).max(axis=1), blocks.shape[1]).reshape(x.shape)
        bound = {"f32": 0.0, "f16": np.abs(x) * 2.0**-11 + 1e-7, "q8_0": amax / 127 / 2 + amax * 2.0**-10}[outtype]
        assert np.all(np.abs(w - x) <= bound), name


def test_text_weights_of_another_model_size_are_refused(tiny_thinker, tiny_gguf):
    from omnimem_cpp.convert.qwen25_omni import read_text_weights

    other = json.loads((tiny_thinker("gqa4") / "config.json").read_text())
    with pytest.raises(ConversionError, match="another size|no tensor"):
        read_text_weights(tiny_gguf("base", "f32"), other)
