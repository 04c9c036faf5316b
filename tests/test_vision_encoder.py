"""The native vision tower (Qwen2.5-VL ViT) against transformers' Qwen2.5-Omni vision encoder on a tiny random
thinker: window attention with partial windows, a full-attention block, 2-D rotary positions, the merger."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf_edit import rewrite_gguf

import omnimem_cpp as om
from omnimem_cpp import media

SMALL = {"min_pixels": 28 * 28, "max_pixels": 10**7}   # keeps tiny inputs at their size


@pytest.fixture(scope="module")
def projector(tiny_projector):
    return tiny_projector


@pytest.fixture(scope="module")
def model(tiny_multimodal):
    return tiny_multimodal


def reference_vision(reference, patches: np.ndarray, grid) -> np.ndarray:
    with torch.no_grad():
        return reference.visual(torch.from_numpy(patches), grid_thw=torch.tensor([grid])).numpy()


def frames(shape) -> np.ndarray:
    return np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)


# The tiny ViT's block 0 attends within 112-px windows (4 x 4 merged cells), block 1 over whole frames.
CASES = {
    # resized to 168 x 224: 6 x 8 cells, so windows of 4x4, 4x4, 2x4, 2x4 cells
    "odd image": ((170, 230, 3), media.IMAGE_PIXELS, (1, 12, 16)),
    # 11 x 12 cells per frame pair, windows cut at the right and bottom, two temporal slices
    "video": ((4, 308, 336, 3), media.VIDEO_PIXELS, (2, 22, 24)),
    # 4 x 5 cells: one full window and a 4 x 1 one per slice
    "small video": ((4, 112, 140, 3), SMALL, (2, 8, 10)),
    # a single merged cell
    "one cell": ((28, 28, 3), SMALL, (1, 2, 2)),
}


@pytest.mark.parametrize("config", ["base", "encoders_alt"])
@pytest.mark.parametrize("case", CASES)
def test_vision_embeddings_match_transformers(tiny_multimodal_of, tiny_reference, case, config):
    model = tiny_multimodal_of(config)
    shape, limits, grid = CASES[case]
    patches, got_grid = media.image_patches(frames(shape), **limits)
    assert got_grid == grid
    expected = reference_vision(tiny_reference(config), patches, grid)
    with model.stream(n_ctx=8) as s:
        ours = s.encode_image(patches, grid)
    assert ours.shape == expected.shape == (grid[0] * grid[1] // 2 * grid[2] // 2, model.info.n_embd)
    assert np.abs(ours - expected).max() / np.abs(expected).max() <= 1e-4   # measured ~1e-6


def test_projector_without_the_omnimem_keys(projector, tiny_gguf, tiny_reference, tmp_path):
    """llama.cpp's converter writes neither the full-attention list nor the merge and window sizes: the
    loader derives the list from clip.vision.n_wa_pattern and uses Qwen2.5-Omni's sizes."""
    path = projector
    for i, key in enumerate(("omnimem.qwen25_omni.vision_fullatt_block_indexes", "clip.vision.spatial_merge_size",
                             "clip.vision.window_size")):
        path = rewrite_gguf(path, tmp_path / f"mmproj-{i}.gguf", drop_key=key)
    patches, grid = media.image_patches(frames((170, 230, 3)))
    expected = reference_vision(tiny_reference("base"), patches, grid)
    with om.Model(tiny_gguf("base", "f32"), mmproj=path) as m, m.stream(n_ctx=8) as s:
        ours = s.encode_image(patches, grid)
    assert np.abs(ours - expected).max() / np.abs(expected).max() <= 1e-4

    no_pattern = rewrite_gguf(path, tmp_path / "mmproj-no-pattern.gguf", drop_key="clip.vision.n_wa_pattern")
    with pytest.raises(om.ModelMismatchError, match="full-attention"):
        om.Model(tiny_gguf("base", "f32"), mmproj=no_pattern)


def test_bad_calls_raise(model):
    patches = np.zeros((16, media.PATCH_DIM), np.float32)
    assert model.info.has_vision_encoder
    with model.stream(n_ctx=8) as s:
        with pytest.raises(om.InvalidArgumentError, match="1176"):
            s.encode_image(np.zeros((16, 1000), np.float32), (1, 4, 4))
        with pytest.raises(om.InvalidArgumentError, match="holds 32 patches, but 16"):
            s.encode_image(patches, (1, 4, 8))
        with pytest.raises(om.InvalidArgumentError, match="multiples of 2"):
            s.encode_image(patches, (1, 1, 16))
        with pytest.raises(om.InvalidArgumentError, match="three"):
            s.encode_image(patches, (4, 4))
        assert s.encode_image(patches, np.array([1, 4, 4])).shape == (4, model.info.n_embd)


def test_vision_needs_a_projector_with_a_vision_tower(tiny_gguf, projector, tmp_path):
    patches = np.zeros((4, media.PATCH_DIM), np.float32)
    with om.Model(tiny_gguf("base", "f32")) as text_only, text_only.stream(n_ctx=8) as s:
        assert not text_only.info.has_vision_encoder
        with pytest.raises(om.InvalidArgumentError, match="mmproj"):
            s.encode_image(patches, (1, 2, 2))
    audio_only = rewrite_gguf(projector, tmp_path / "audio-only.gguf", drop_key="clip.has_vision_encoder")
    with om.Model(tiny_gguf("base", "f32"), mmproj=audio_only) as m, m.stream(n_ctx=8) as s:
        assert m.info.has_audio_encoder and not m.info.has_vision_encoder
        with pytest.raises(om.InvalidArgumentError, match="no vision encoder"):
            s.encode_image(patches, (1, 2, 2))
