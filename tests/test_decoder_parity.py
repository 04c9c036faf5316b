"""The native text decoder against transformers (the numerical truth) on tiny random Qwen2.5-Omni thinkers.

Error measure throughout: max |ours - reference| / max |reference| over every compared logit.
Tolerances (docs/architecture.md, "Numerical tolerances"):
- F32 weights, F32 memory: 1e-4 (measured ~1.4e-6).
- F16 memory (flash-attention path): 1e-2 (measured ~3e-3).
- F16 / BF16 weights against the original model: 1e-2 / 5e-2 (measured ~2e-3 / ~2.7e-2).
- Q8_0 / Q4_0 weights against transformers running the same dequantized weights: 8e-2 / 1e-1 (measured
  ~3.7e-2 / ~4.6e-2; what remains is ggml quantizing activations for its quantized matmuls).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import omnimem_cpp as om

CONFIGS = ("base", "mha_tied", "gqa4", "odd_ffn")
PROMPTS = (
    "The quick brown fox jumps over the lazy dog.",
    "<|im_start|>user\nHow many gulls were on the breakwater?<|im_end|>\n<|im_start|>assistant\n",
    "Zürich, 1889 — naïve café numbers 0123456789!",
)


def rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def reference_logits(model, ids) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].numpy()


def tokens_of(hf_dir, text):
    """Token ids from the checkpoint's own tokenizer (transformers), independent of ours."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(hf_dir)(text)["input_ids"]


def decode_each(stream, ids) -> np.ndarray:
    """Logits after every token, fed one at a time."""
    out = []
    for t in ids:
        stream.feed_tokens([t])
        out.append(stream.logits())
    return np.array(out)


@pytest.mark.parametrize("config", CONFIGS)
def test_f32_logits_match_transformers_for_batch_split_and_token_by_token(config, tiny_thinker, tiny_gguf,
                                                                        tiny_reference):
    hf_dir, ref = tiny_thinker(config), tiny_reference(config)
    with om.Model(tiny_gguf(config, "f32"), n_threads=2) as model:
        for text in PROMPTS:
            ids = tokens_of(hf_dir, text)
            assert model.tokenize(text) == ids
            expected = reference_logits(ref, ids)
            with model.stream(kv_type="f32", n_ctx=128) as s:
                s.feed_tokens(ids)
                assert rel_err(s.logits(), expected[-1]) <= 1e-4
                s.rollback(0)
                s.feed_tokens(ids[:5])
                s.feed_tokens(ids[5:])
                assert rel_err(s.logits(), expected[-1]) <= 1e-4
                s.rollback(0)
                assert rel_err(decode_each(s, ids), expected) <= 1e-4
            with model.stream(kv_type="f32", n_ctx=128, n_batch=3) as s:  # the runtime splits the feed itself
                s.feed_tokens(ids)
                assert rel_err(s.logits(), expected[-1]) <= 1e-4


@pytest.mark.parametrize("config", ("base", "gqa4"))
def test_f16_memory_flash_attention_path(config, tiny_thinker, tiny_gguf, tiny_reference):
    ids = tokens_of(tiny_thinker(config), PROMPTS[0] + PROMPTS[2])
    expected = reference_logits(tiny_reference(config), ids)
    with om.Model(tiny_gguf(config, "f32"), n_threads=2) as model, model.stream(kv_type="f16", n_ctx=128) as s:
        s.feed_tokens(ids[:9])
        batched = s.logits()
        rest = decode_each(s, ids[9:])
    assert rel_err(batched, expected[8]) <= 1e-2
    assert rel_err(rest, expected[9:]) <= 1e-2


@pytest.mark.parametrize("outtype, tolerance", [("f16", 1e-2), ("bf16", 5e-2)])
def test_half_precision_weights_against_original_model(outtype, tolerance, tiny_thinker, tiny_gguf, tiny_reference):
    ids = tokens_of(tiny_thinker("base"), PROMPTS[1])
    expected = reference_logits(tiny_reference("base"), ids)
    with om.Model(tiny_gguf("base", outtype), n_threads=2) as model, model.stream(n_ctx=128) as s:
        assert rel_err(decode_each(s, ids), expected) <= tolerance


_GGUF_TO_HF = [
    (r"^blk\.(\d+)\.attn_norm\.", r"model.layers.\1.input_layernorm."),
    (r"^blk\.(\d+)\.ffn_norm\.", r"model.layers.\1.post_attention_layernorm."),
    (r"^blk\.(\d+)\.attn_output\.", r"model.layers.\1.self_attn.o_proj."),
    (r"^blk\.(\d+)\.attn_([qkv])\.", r"model.layers.\1.self_attn.\2_proj."),
    (r"^blk\.(\d+)\.ffn_(gate|up|down)\.", r"model.layers.\1.mlp.\2_proj."),
    (r"^token_embd\.", "model.embed_tokens."),
    (r"^output_norm\.", "model.norm."),
    (r"^output\.", "lm_head."),
]


def dequantized_reference(gguf_path, reference):
    """The transformers model with every weight replaced by the GGUF's dequantized values."""
    import copy

    import gguf
    from gguf.quants import dequantize

    state = {}
    for t in gguf.GGUFReader(gguf_path).tensors:
        name = t.name
        for pattern, repl in _GGUF_TO_HF:
            name = re.sub(pattern, repl, name)
        values = dequantize(t.data, t.tensor_type).reshape([int(n) for n in reversed(t.shape)])
        state[name] = torch.from_numpy(np.array(values, dtype=np.float32))
    model = copy.deepcopy(reference)
    _, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected
    return model


@pytest.mark.parametrize("config", ("base", "gqa4"))
@pytest.mark.parametrize("outtype, tolerance", [("q8_0", 8e-2), ("q4_0", 1e-1)])
def test_quantized_weights_against_dequantized_reference(config, outtype, tolerance, tiny_thinker, tiny_gguf,
                                                         tiny_reference):
    path = tiny_gguf(config, outtype)
    ids = tokens_of(tiny_thinker(config), PROMPTS[0] + PROMPTS[1])
    expected = reference_logits(dequantized_reference(path, tiny_reference(config)), ids)
    with om.Model(path, n_threads=2) as model, model.stream(n_ctx=128) as s:
        s.feed_tokens(ids[:10])
        ours = np.vstack([s.logits()[None], decode_each(s, ids[10:])])
    assert rel_err(ours, expected[9:]) <= tolerance
    assert (ours.argmax(-1) == expected[9:].argmax(-1)).mean() >= 0.75


def test_tmrope_positions_of_an_audio_visual_prompt_match_transformers(tiny_thinker, tiny_gguf, tiny_reference):
    """Inputs with distinct (t, h, w) positions — a video with its audio interleaved, as transformers' own
    get_rope_index lays them out — exercise every M-RoPE section. The inputs are given as embeddings (the
    encoders are tested elsewhere); the text around them as tokens."""
    import tiny_models

    ref = tiny_reference("base")
    ids = tiny_models.TOKEN_IDS
    grid_t, grid_h, grid_w = 3, 4, 6                      # patch grid before the 2x2 merge
    n_video = grid_t * (grid_h // 2) * (grid_w // 2)
    n_audio = 40
    prefix = tokens_of(tiny_thinker("base"), "<|im_start|>user\n")
    block = ([ids["<|vision_bos|>"], ids["<|audio_bos|>"]] + [ids["<|VIDEO|>"]] * n_video
             + [ids["<|AUDIO|>"]] * n_audio + [ids["<|audio_eos|>"], ids["<|vision_eos|>"]])
    suffix = tokens_of(tiny_thinker("base"), "What happened?<|im_end|>\n<|im_start|>assistant\n")
    input_ids = torch.tensor([prefix + block + suffix])
    positions, _ = ref.get_rope_index(
        input_ids, video_grid_thw=torch.tensor([[grid_t, grid_h, grid_w]]), attention_mask=torch.ones_like(input_ids),
        use_audio_in_video=True, audio_seqlens=torch.tensor([4 * n_audio - 3]), second_per_grids=torch.tensor([1.0]))
    positions = positions[:, 0].T.numpy()                # [n, 3]
    assert (positions[:, 0] != positions[:, 1]).any() and (positions[:, 1] != positions[:, 2]).any()
    rng = np.random.default_rng(0)
    embeddings = ref.get_input_embeddings()(input_ids)[0].detach().numpy().copy()
    media = np.isin(input_ids[0].numpy(), [ids["<|VIDEO|>"], ids["<|AUDIO|>"]])
    embeddings[media] = rng.normal(0, 1, (int(media.sum()), embeddings.shape[1]))  # stand-ins for encoder outputs
    with torch.no_grad():
        expected = ref(inputs_embeds=torch.from_numpy(embeddings)[None],
                       position_ids=torch.from_numpy(positions.T.copy())[:, None]).logits[0].numpy()

    start, end = len(prefix), len(prefix) + len(block)
    with om.Model(tiny_gguf("base", "f32"), n_threads=2) as model, model.stream(kv_type="f32", n_ctx=256) as s:
        s.feed_tokens(prefix)
        assert rel_err(s.logits(), expected[start - 1]) <= 1e-4
        modality = np.where(input_ids[0, start:end].numpy() == ids["<|AUDIO|>"], 2,
                            np.where(media[start:end], 1, 0))
        s.feed_embeddings(embeddings[start:end], positions[start:end], modality)
        assert rel_err(s.logits(), expected[end - 1]) <= 1e-4
        assert s.next_position == positions[:end].max() + 1
        s.feed_tokens(suffix)   # text after the block continues at max + 1, as get_rope_index does
        assert rel_err(s.logits(), expected[-1]) <= 1e-4
