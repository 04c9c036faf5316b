"""The projector file (mmproj): keys and tensors checked against the HF checkpoint and config read independently
here, the generated audio position table against transformers' own, and the file in llama.cpp's libmtmd
(through llama-cpp-python), whose ViT output must match transformers'."""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import shutil

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from safetensors.numpy import load_file, save_file

import tiny_models
from omnimem_cpp.cli import main as cli_main
from omnimem_cpp.convert import convert_checkpoint, convert_projector
from omnimem_cpp.convert.qwen25_omni_mmproj import sinusoid_table
from omnimem_cpp.errors import ConversionError

FORMS = [
    pytest.param({}, id="standalone"),
    pytest.param({"full_checkpoint": True, "shards": 3}, id="full-sharded"),
]
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


@pytest.fixture(scope="module")
def tiny_mmproj(tiny_thinker, tmp_path_factory):
    """Factory: tiny_mmproj(outtype="f32", **make_thinker_kw) -> Path of a converted projector file."""
    cache = {}

    def make(outtype="f32", **kw):
        key = (outtype, tuple(sorted(kw.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp("mmproj") / f"mmproj-{outtype}.gguf"
            cache[key] = convert_projector(tiny_thinker("base", **kw), out, outtype, progress=False)
        return cache[key]

    return make


def _fields(reader: GGUFReader) -> dict:
    return {name: field.contents() for name, field in reader.fields.items()}


def _thinker_config(ckpt_dir) -> dict:
    cfg = json.loads((ckpt_dir / "config.json").read_text())
    return cfg.get("thinker_config", cfg)




def _expected_tensors(thinker: dict) -> dict:
    """GGUF name -> (HF name or None when generated/split, numpy-order shape), from llama.cpp's clip naming."""
    v, a, n_text = thinker["vision_config"], thinker["audio_config"], thinker["text_config"]["hidden_size"]
    c, ff, merged = v["hidden_size"], v["intermediate_size"], v["hidden_size"] * v["spatial_merge_size"] ** 2
    patch = (c, v["in_channels"], v["patch_size"], v["patch_size"])
    out = {"v.patch_embd.weight": (None, patch), "v.patch_embd.weight.1": (None, patch),
           "v.post_ln.weight": ("visual.merger.ln_q.weight", (c,))}
    for i in range(v["depth"]):
        hf, blk = f"visual.blocks.{i}.", f"v.blk.{i}."
        out[blk + "ln1.weight"] = (hf + "norm1.weight", (c,))
        out[blk + "ln2.weight"] = (hf + "norm2.weight", (c,))
        for g, h, shape in [("attn_q", "attn.q", (c, c)), ("attn_k", "attn.k", (c, c)), ("attn_v", "attn.v", (c, c)),
                            ("attn_out", "attn.proj", (c, c)), ("ffn_gate", "mlp.gate_proj", (ff, c)),
                            ("ffn_up", "mlp.up_proj", (ff, c)), ("ffn_down", "mlp.down_proj", (c, ff))]:
            out[f"{blk}{g}.weight"] = (f"{hf}{h}.weight", shape)
            out[f"{blk}{g}.bias"] = (f"{hf}{h}.bias", shape[:1])
    for n, h, shape in [(0, "visual.merger.mlp.0", (merged, merged)), (2, "visual.merger.mlp.2", (n_text, merged))]:
        out[f"mm.{n}.weight"] = (h + ".weight", shape)
        out[f"mm.{n}.bias"] = (h + ".bias", shape[:1])

    d, aff = a["d_model"], a["encoder_ffn_dim"]
    out["a.conv1d.1.weight"] = ("audio_tower.conv1.weight", (d, a["num_mel_bins"], 3))
    out["a.conv1d.2.weight"] = ("audio_tower.conv2.weight", (d, d, 3))
    out["a.conv1d.1.bias"] = (None, (d, 1))
    out["a.conv1d.2.bias"] = (None, (d, 1))
    out["a.position_embd.weight"] = (None, (a["max_source_positions"], d))
    for i in range(a["encoder_layers"]):
        hf, blk = f"audio_tower.layers.{i}.", f"a.blk.{i}."
        for g, h, shape, bias in [("attn_q", "self_attn.q_proj", (d, d), True),
                                  ("attn_k", "self_attn.k_proj", (d, d), False),
                                  ("attn_v", "self_attn.v_proj", (d, d), True),
                                  ("attn_out", "self_attn.out_proj", (d, d), True),
                                  ("ln1", "self_attn_layer_norm", (d,), True), ("ln2", "final_layer_norm", (d,), True),
                                  ("ffn_up", "fc1", (aff, d), True), ("ffn_down", "fc2", (d, aff), True)]:
            out[f"{blk}{g}.weight"] = (f"{hf}{h}.weight", shape)
            if bias:
                out[f"{blk}{g}.bias"] = (f"{hf}{h}.bias", shape[:1])
    out["a.post_ln.weight"] = ("audio_tower.ln_post.weight", (d,))
    out["a.post_ln.bias"] = ("audio_tower.ln_post.bias", (d,))
    out["mm.a.fc.weight"] = ("audio_tower.proj.weight", (n_text, d))
    out["mm.a.fc.bias"] = ("audio_tower.proj.bias", (n_text,))
    return out


def _data(tensor) -> np.ndarray:
    """A GGUFReader tensor's float32 values in numpy (HF) order."""
    return np.asarray(tensor.data, dtype=np.float32).reshape([int(n) for n in reversed(tensor.shape)])


@pytest.mark.parametrize("kw", FORMS)
def test_keys_match_config(tiny_thinker, tiny_mmproj, kw):
    thinker = _thinker_config(tiny_thinker("base", **kw))
    v, a = thinker["vision_config"], thinker["audio_config"]
    f = _fields(GGUFReader(tiny_mmproj("f32", **kw)))
    expected = {
        "general.architecture": "clip", "general.type": "mmproj", "general.file_type": 0,
        "clip.projector_type": "qwen2.5o", "clip.has_vision_encoder": True, "clip.has_audio_encoder": True,
        "clip.use_silu": True,
        "clip.vision.projection_dim": v["out_hidden_size"], "clip.vision.image_size": 560,
        "clip.vision.patch_size": v["patch_size"], "clip.vision.embedding_length": v["hidden_size"],
        "clip.vision.feed_forward_length": v["intermediate_size"], "clip.vision.block_count": v["depth"],
        "clip.vision.attention.head_count": v["num_heads"], "clip.vision.n_wa_pattern": 2,
        "clip.vision.spatial_merge_size": v["spatial_merge_size"], "clip.vision.window_size": v["window_size"],
        "clip.vision.image_min_pixels": 56 * 56, "clip.vision.image_max_pixels": 28 * 28 * 1280,
        "clip.audio.projection_dim": a["output_dim"], "clip.audio.num_mel_bins": a["num_mel_bins"],
        "clip.audio.embedding_length": a["d_model"], "clip.audio.feed_forward_length": a["encoder_ffn_dim"],
        "clip.audio.block_count": a["encoder_layers"], "clip.audio.attention.head_count": a["encoder_attention_heads"],
        "omnimem.qwen25_omni.vision_fullatt_block_indexes": v["fullatt_block_indexes"],
        "omnimem.qwen25_omni.vision_temporal_patch_size": v["temporal_patch_size"],
        "omnimem.qwen25_omni.audio_n_window": a["n_window"],
        "omnimem.qwen25_omni.image_token_id": thinker["image_token_index"],
        "omnimem.qwen25_omni.audio_bos_token_id": thinker["audio_start_token_id"],
        "omnimem.qwen25_omni.vision_bos_token_id": thinker["vision_start_token_id"],
        "omnimem.qwen25_omni.position_id_per_seconds": 25, "omnimem.qwen25_omni.seconds_per_chunk": 2,
    }
    assert {k: f.get(k) for k in expected} == expected
    assert f["clip.vision.attention.layer_norm_epsilon"] == pytest.approx(1e-6)
    assert f["clip.audio.attention.layer_norm_epsilon"] == pytest.approx(1e-5)
    np.testing.assert_allclose(f["clip.vision.image_mean"], CLIP_MEAN, rtol=1e-6)
    np.testing.assert_allclose(f["clip.vision.image_std"], CLIP_STD, rtol=1e-6)


@pytest.mark.parametrize("kw", FORMS)
def test_f32_tensors_match_checkpoint(tiny_thinker, tiny_mmproj, kw):
    ckpt = tiny_thinker("base", **kw)
    expected = _expected_tensors(_thinker_config(ckpt))
    weights = tiny_models.checkpoint_tensors(ckpt)
    reader = GGUFReader(tiny_mmproj("f32", **kw))
    assert sorted(t.name for t in reader.tensors) == sorted(expected)
    for t in reader.tensors:
        hf_name, shape = expected[t.name]
        assert t.tensor_type == T.F32, t.name
        data = _data(t)
        assert data.shape == shape, t.name
        if hf_name is not None:
            np.testing.assert_array_equal(data, weights[hf_name], err_msg=t.name)
    by_name = {t.name: t for t in reader.tensors}
    for n in (1, 2):
        np.testing.assert_array_equal(_data(by_name[f"a.conv1d.{n}.bias"])[:, 0], weights[f"audio_tower.conv{n}.bias"])
    # the two temporal slices recombine to the Conv3d kernel [C, 3, T=2, 14, 14]
    kernel = np.stack([_data(by_name["v.patch_embd.weight"]), _data(by_name["v.patch_embd.weight.1"])], axis=2)
    np.testing.assert_array_equal(kernel, weights["visual.patch_embed.proj.weight"])


def test_position_table_matches_transformers(tiny_thinker, tiny_mmproj, tiny_reference):
    table = {t.name: t for t in GGUFReader(tiny_mmproj("f32")).tensors}["a.position_embd.weight"]
    reference = tiny_reference("base").audio_tower.positional_embedding.positional_embedding.numpy()
    np.testing.assert_allclose(_data(table), reference, rtol=0, atol=1e-6)


def test_position_table_at_real_size():
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import SinusoidsPositionEmbedding

    ours = sinusoid_table(1500, 1280)
    reference = SinusoidsPositionEmbedding(1500, 1280).positional_embedding.numpy()
    # A 2-second chunk uses rows 0..99. Deeper rows differ by up to 1.2e-4 because torch's float32 exp is off by
    # an ulp for some frequencies, which the angle p * f multiplies (our exp is correctly rounded).
    np.testing.assert_allclose(ours[:100], reference[:100], rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=2e-4)


def _expected_type(name: str, shape: tuple[int, ...], outtype: str) -> T:
    """llama.cpp's type choices (see the converter module for the two kernel deviations)."""
    if len(shape) == 1 or name.endswith(".bias") or name == "a.position_embd.weight":
        return T.F32
    if name.startswith(("v.patch_embd", "a.conv1d")):
        return T.F32 if outtype == "f32" else T.F16
    if outtype == "q8_0" and shape[-1] % 32:
        return T.F16
    return {"f32": T.F32, "f16": T.F16, "bf16": T.BF16, "q8_0": T.Q8_0}[outtype]


@pytest.mark.parametrize("outtype", ["f16", "bf16", "q8_0"])
def test_tensor_types(tiny_thinker, tiny_mmproj, outtype):
    expected = _expected_tensors(_thinker_config(tiny_thinker("base")))
    reader = GGUFReader(tiny_mmproj(outtype))
    assert _fields(reader)["general.file_type"] == {"f16": 1, "bf16": 32, "q8_0": 7}[outtype]
    types = {t.name: T(t.tensor_type) for t in reader.tensors}
    assert types == {name: _expected_type(name, shape, outtype) for name, (_, shape) in expected.items()}


def test_convert_checkpoint_writes_both(tiny_thinker, tmp_path):
    text, mmproj = tmp_path / "m.gguf", tmp_path / "mm.gguf"
    convert_checkpoint(tiny_thinker("base"), text, "q4_0", mmproj=mmproj, progress=False)
    assert _fields(GGUFReader(text))["general.architecture"] == "qwen2vl"
    assert _fields(GGUFReader(mmproj))["general.file_type"] == 7  # q4_0 text model -> q8_0 projector


def test_cli_mmproj(tiny_thinker, tmp_path, capsys):
    text, mmproj = tmp_path / "m.gguf", tmp_path / "mm.gguf"
    rc = cli_main(["convert", str(tiny_thinker("base")), "-o", str(text), "--outtype", "f32",
                   "--mmproj", str(mmproj), "--mmproj-outtype", "bf16", "-q"])
    assert rc == 0
    assert capsys.readouterr().out.split() == ["wrote", str(text), "wrote", str(mmproj)]
    assert _fields(GGUFReader(text))["general.file_type"] == 0
    assert _fields(GGUFReader(mmproj))["general.file_type"] == 32


def test_preprocessor_config_is_used(tiny_thinker, tmp_path):
    ckpt = shutil.copytree(tiny_thinker("base"), tmp_path / "hf")
    pre = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "min_pixels": 3136, "max_pixels": 12845056}
    (ckpt / "preprocessor_config.json").write_text(json.dumps(pre))
    f = _fields(GGUFReader(convert_projector(ckpt, tmp_path / "mm.gguf", "f32", progress=False)))
    assert (f["clip.vision.image_mean"], f["clip.vision.image_std"]) == (pre["image_mean"], pre["image_std"])
    assert (f["clip.vision.image_min_pixels"], f["clip.vision.image_max_pixels"]) == (3136, 12845056)


def _copy_without(src, dst, prefix: str):
    dst.mkdir()
    shutil.copy(src / "config.json", dst / "config.json")
    state = {k: v for k, v in load_file(src / "model.safetensors").items() if not k.startswith(prefix)}
    save_file(state, dst / "model.safetensors")
    return dst


def _copy_with_config(src, dst, edit):
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    edit(cfg)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize("prefix, message", [("visual.", "no vision encoder"), ("audio_tower.", "no audio encoder")])
def test_missing_tower_is_an_error(tiny_thinker, tmp_path, prefix, message):
    ckpt = _copy_without(tiny_thinker("base"), tmp_path / "hf", prefix)
    text, mmproj = tmp_path / "m.gguf", tmp_path / "mm.gguf"
    with pytest.raises(ConversionError, match=message + r" .*; convert without --mmproj"):
        convert_checkpoint(ckpt, text, "f32", mmproj=mmproj, progress=False)
    assert not text.exists() and not mmproj.exists()  # nothing written when the projector cannot be
    convert_checkpoint(ckpt, text, "f32", progress=False)  # the text model alone still converts


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["vision_config"].update(intermediate_size=96), r"visual\.blocks\.0\.mlp\.gate_proj\.weight has shape"),
    (lambda c: c["audio_config"].update(encoder_ffn_dim=96), r"audio_tower\.layers\.0\.fc1\.weight has shape"),
    (lambda c: c["vision_config"].update(fullatt_block_indexes=[0]), r"fullatt_block_indexes \[0\] is not every n-th"),
    (lambda c: c["audio_config"].update(output_dim=32), r"audio output_dim 32 differs from the text hidden_size 64"),
    (lambda c: c["vision_config"].update(temporal_patch_size=1), "exactly 2 temporal kernel slices"),
    (lambda c: c["vision_config"].pop("depth"), r"vision_config lacks 'depth'"),
    (lambda c: c.pop("audio_config"), "config.json has no audio_config"),
], ids=["vision-shape", "audio-shape", "fullatt", "projection-dim", "temporal", "missing-key", "no-audio-config"])
def test_config_mismatch_is_an_error(tiny_thinker, tmp_path, edit, message):
    ckpt = _copy_with_config(tiny_thinker("base"), tmp_path / "hf", edit)
    with pytest.raises(ConversionError, match=message):
        convert_projector(ckpt, tmp_path / "mm.gguf", "f32", progress=False)
    assert not (tmp_path / "mm.gguf").exists()


def test_outtype_errors(tiny_thinker, tmp_path):
    with pytest.raises(ConversionError, match="cannot be written as q4_0; choose one of f32, f16, bf16, q8_0"):
        convert_projector(tiny_thinker("base"), tmp_path / "mm.gguf", "q4_0")
    with pytest.raises(ConversionError, match=r"without a projector file; add --mmproj FILE"):
        convert_checkpoint(tiny_thinker("base"), tmp_path / "m.gguf", "f32", mmproj_outtype="f16")


# --- interop: the file in llama.cpp's libmtmd ---------------------------------------------------------------

IMAGE_SIZE = (168, 224)  # H, W: multiples of 28, inside the pixel limits, so neither side resizes
AUDIO_SECONDS = 3
LIBMTMD_WINDOW_TOKENS = 750  # libmtmd pads audio to 30-s windows: 3000 mel frames -> 750 tokens
# Max |difference| / max |reference| of the ViT output, measured: f32 5.8e-4 (libmtmd's own arithmetic: the f32
# file holds the checkpoint's exact values), f16 7.6e-4, bf16 6.4e-3, q8_0 2.0e-2.
VISION_TOLERANCE = {"f32": 2e-3, "f16": 3e-3, "bf16": 2e-2, "q8_0": 6e-2}


def _libmtmd_encode(text_path: str, mmproj_paths: dict, image: np.ndarray, frames: np.ndarray, pcm: np.ndarray) -> dict:
    """In a child process (an abort in libmtmd must not kill the test run): load each projector file next to the
    text model, then encode a still image, a 2-frame video patch and audio with it. Returns {outtype: results}."""
    import ctypes

    import llama_cpp
    from llama_cpp import mtmd_cpp as mt

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.use_extra_bufts = False  # AMX weight buffers crash on some CPUs (see test_interop_llamacpp)
    model = llama_cpp.llama_model_load_from_file(text_path.encode(), params)
    n_embd = llama_cpp.llama_model_n_embd(model)
    ctx_params = mt.mtmd_context_params_default()
    ctx_params.use_gpu, ctx_params.n_threads, ctx_params.print_timings = False, 2, False
    ctx_params.flash_attn_type = 0  # disabled: exact F32 attention
    ctx_params.warmup = False  # its 1288x1288 warm-up image costs seconds per file

    def encode(ctx, *bitmaps) -> np.ndarray:
        prompt = b"look: " + mt.mtmd_default_marker() * len(bitmaps) + b" now"
        text = mt.mtmd_input_text(text=prompt, text_len=len(prompt), add_special=False, parse_special=True)
        chunks = mt.mtmd_input_chunks_init()
        rc = mt.mtmd_tokenize(ctx, chunks, ctypes.byref(text), (mt.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps),
                              len(bitmaps))
        assert rc == 0, f"mtmd_tokenize returned {rc}"
        media = [mt.mtmd_input_chunks_get(chunks, i) for i in range(mt.mtmd_input_chunks_size(chunks))]
        media = [c for c in media if mt.mtmd_input_chunk_get_type(c) != 0]  # 0: text
        assert len(media) == 1
        assert mt.mtmd_encode_chunk(ctx, media[0]) == 0
        n = mt.mtmd_input_chunk_get_n_tokens(media[0])
        return np.ctypeslib.as_array(mt.mtmd_get_output_embd(ctx), shape=(n * n_embd,)).reshape(n, n_embd).copy()

    def rgb(pixels: np.ndarray, mergeable: bool = False):
        h, w, _ = pixels.shape
        bitmap = mt.mtmd_bitmap_init(w, h, (ctypes.c_uint8 * pixels.size).from_buffer_copy(pixels.tobytes()))
        mt.mtmd_bitmap_set_mergeable(bitmap, mergeable)
        return bitmap

    sound = mt.mtmd_bitmap_init_from_audio(pcm.size, (ctypes.c_float * pcm.size).from_buffer_copy(pcm.tobytes()))
    results = {}
    for outtype, path in mmproj_paths.items():
        ctx = mt.mtmd_init_from_file(path.encode(), model, ctx_params)
        results[outtype] = {"loaded": bool(ctx)}
        if ctx:
            results[outtype].update(
                vision=mt.mtmd_support_vision(ctx), audio=mt.mtmd_support_audio(ctx), image=encode(ctx, rgb(image)),
                video=encode(ctx, *(rgb(f, mergeable=True) for f in frames)), sound=encode(ctx, sound))
            mt.mtmd_free(ctx)
    return results


@pytest.fixture(scope="module")
def media():
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, size=(*IMAGE_SIZE, 3), dtype=np.uint8)
    frames = rng.integers(0, 256, size=(2, *IMAGE_SIZE, 3), dtype=np.uint8)
    t = np.arange(16000 * AUDIO_SECONDS) / 16000
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 0.7 * t)).astype(np.float32)
    return image, frames, pcm


@pytest.fixture(scope="module")
def libmtmd_results(tiny_gguf, tiny_mmproj, media):
    """What libmtmd makes of each projector type, from one child process for all of them."""
    pytest.importorskip("llama_cpp.mtmd_cpp")
    paths = {outtype: str(tiny_mmproj(outtype)) for outtype in VISION_TOLERANCE}
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_libmtmd_encode, str(tiny_gguf("base", "f32")), paths, *media).result(timeout=300)


def _reference_vit(model, image=None, frames=None) -> np.ndarray:
    import torch
    from PIL import Image
    from transformers import Qwen2VLImageProcessor

    processor = Qwen2VLImageProcessor()
    if image is not None:
        batch = processor(images=[Image.fromarray(image)], return_tensors="pt")
        pixels, grid = batch["pixel_values"], batch["image_grid_thw"]
    else:
        batch = processor(images=None, videos=[[Image.fromarray(f) for f in frames]], return_tensors="pt")
        pixels, grid = batch["pixel_values_videos"], batch["video_grid_thw"]
    with torch.no_grad():
        return model.visual(pixels, grid_thw=grid).numpy()


@pytest.mark.parametrize("outtype", list(VISION_TOLERANCE))
def test_libmtmd_loads_and_matches_transformers(libmtmd_results, tiny_reference, media, outtype):
    image, frames, _ = media
    got = libmtmd_results[outtype]
    assert got["loaded"], "libmtmd rejected the projector file"
    assert got["vision"] and got["audio"]
    model = tiny_reference("base")
    n_tokens = IMAGE_SIZE[0] // 28 * IMAGE_SIZE[1] // 28
    references = {"image": _reference_vit(model, image=image), "video": _reference_vit(model, frames=frames)}
    for key, reference in references.items():
        assert got[key].shape == reference.shape == (n_tokens, 64)
        rel = np.abs(got[key] - reference).max() / np.abs(reference).max()
        assert rel <= VISION_TOLERANCE[outtype], f"{outtype} {key}: relative ViT error {rel:.3g}"
    # libmtmd's Qwen2.5-Omni audio graph attends over whole 30-s windows with one position run, where
    # transformers attends within 2-s chunks; so audio is checked for shape and sanity, not against transformers.
    assert got["sound"].shape == (LIBMTMD_WINDOW_TOKENS, 64)
    assert np.isfinite(got["sound"]).all() and got["sound"].std() > 0
