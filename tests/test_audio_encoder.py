"""The native audio tower against transformers' Qwen2.5-Omni audio encoder on a tiny random thinker."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import omnimem_cpp as om


@pytest.fixture(scope="module")
def projector(tiny_projector):
    return tiny_projector


@pytest.fixture(scope="module")
def model(tiny_multimodal):
    return tiny_multimodal


def reference_audio(reference, mel: np.ndarray) -> np.ndarray:
    n = torch.tensor([mel.shape[1]])
    with torch.no_grad():
        out = reference.audio_tower(torch.from_numpy(mel), feature_lens=n, aftercnn_lens=(n - 1) // 2 + 1)
    return out.last_hidden_state.numpy()


# 2 s exactly, 5.3 s (chunks 200/200/130), an odd-length tail, 10 s, and less than one chunk
@pytest.mark.parametrize("config", ["base", "encoders_alt"])
@pytest.mark.parametrize("n_frames", [200, 530, 399, 1000, 37])
def test_audio_embeddings_match_transformers(tiny_multimodal_of, tiny_reference, n_frames, config):
    model = tiny_multimodal_of(config)
    mel = np.random.default_rng(n_frames).normal(0, 1, (128, n_frames)).astype(np.float32)
    expected = reference_audio(tiny_reference(config), mel)
    with model.stream(n_ctx=8) as s:
        ours = s.encode_audio(mel)
    assert ours.shape == expected.shape == (((n_frames - 1) // 2 + 1) // 2, model.info.n_embd)
    assert np.abs(ours - expected).max() / np.abs(expected).max() <= 1e-4   # measured ~1e-6


def test_audio_needs_a_projector_with_the_right_mel_bins(model, tiny_gguf):
    with model.stream(n_ctx=8) as s:
        with pytest.raises(om.InvalidArgumentError, match="mel bins"):
            s.encode_audio(np.zeros((80, 200), np.float32))
    with om.Model(tiny_gguf("base", "f32")) as text_only, text_only.stream(n_ctx=8) as s:
        assert not text_only.info.has_audio_encoder
        with pytest.raises(om.InvalidArgumentError, match="mmproj"):
            s.encode_audio(np.zeros((128, 200), np.float32))


def test_a_text_model_is_not_a_projector(tiny_gguf):
    with pytest.raises(om.UnsupportedModelError, match="not a multimodal projector"):
        om.Model(tiny_gguf("base", "f32"), mmproj=tiny_gguf("base", "f32"))
