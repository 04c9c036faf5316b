"""Our converted GGUFs in llama.cpp itself (through llama-cpp-python): they load, tokenize like the Hugging Face
tokenizer, and give transformers' logits."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import tiny_models

llama_cpp = pytest.importorskip("llama_cpp")
transformers = pytest.importorskip("transformers")

TEXTS = [
    "Hello world! The river runs past the old mill.",
    "<|im_start|>user\nWhat's up? I'll pay 1024 coins.<|im_end|>\n<|im_start|>assistant\n",
    "naïve café — 日本語 🙂 <tool_call>{\"x\": 1}</tool_call>",
    "  leading spaces\n\n\ttabs and trailing   ",
    "<|vision_bos|><|audio_bos|><|VIDEO|><|AUDIO|><|audio_eos|><|vision_eos|>",
]

PROMPTS = [
    TEXTS[0] + TEXTS[1],
    "Numbers like 42 and 3.14 appear in tables; quiet forests hide foxes, owls and deer at dusk. " * 3,
]

# Max |logit difference| / max |reference logit| allowed, over all positions of PROMPTS. Measured on the tiny
# models (4 configs x 2 seeds), worst case: f32 1.4e-6, f16 9.2e-4, bf16 6.6e-3, q8_0 2.4e-2, q4_0 0.30.
# Most of the quantized error is the weights' own rounding, amplified through the layers; llama.cpp adds its
# F16/Q8 activation rounding on top (against transformers run on the dequantized weights: about 5e-4 for f16,
# 1.5e-2 for q8_0 and q4_0).
# Q4_0's max error is loose, so it must also keep the logits' correlation.
REL_TOLERANCE = {"f32": 1e-4, "f16": 3e-3, "bf16": 2e-2, "q8_0": 6e-2, "q4_0": 0.6}
Q4_0_MIN_CORRELATION = 0.95
# Ours against llama.cpp on the same file: the same ggml kernels, evaluated token by token (ours) against
# one batch (llama.cpp), so only the kernels' batch and repacked paths differ.
OURS_VS_LLAMACPP_TOLERANCE = {"f32": 1e-5, "f16": 2e-3, "q8_0": 1e-4, "q4_0": 1e-4}  # measured 1e-6, 4.5e-4, 0, 1e-7

CASES = [("base", t) for t in REL_TOLERANCE] + [("mha_tied", "f32"), ("gqa4", "f32"), ("odd_ffn", "f32"), ("odd_ffn", "q8_0")]


@contextlib.contextmanager
def _plain_cpu_weight_buffers():
    """Make llama-cpp-python load weights without ggml's extra buffer types.

    On CPUs with AMX, llama.cpp 0.3.36 puts quantized weights in an AMX buffer whose batched matmul crashes
    (SIGSEGV) when built with GCC 12; the Llama constructor has no option for it, so the model params it
    starts from are patched while it runs.
    """
    module = llama_cpp.llama.llama_cpp
    default_params = module.llama_model_default_params

    def params():
        p = default_params()
        p.use_extra_bufts = False
        return p

    module.llama_model_default_params = params
    try:
        yield
    finally:
        module.llama_model_default_params = default_params


def _load(path, **kw):
    with _plain_cpu_weight_buffers():
        # F32 K/V so that only the weights' type differs from the float32 reference (the default F16 cache
        # alone costs about 1e-3 relative error)
        return llama_cpp.Llama(str(path), n_ctx=256, n_batch=256, n_threads=2, logits_all=True, verbose=False,
                               type_k=0, type_v=0, **kw)


@pytest.fixture(scope="module")
def hf_tokenizer(tiny_thinker):
    return transformers.AutoTokenizer.from_pretrained(tiny_thinker("base"))


def test_llamacpp_tokenizer_matches_hf(tiny_gguf, hf_tokenizer):
    llm = _load(tiny_gguf("base", "f32"), vocab_only=True)
    for text in TEXTS:
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        assert ids == hf_tokenizer(text)["input_ids"], text
        assert llm.detokenize(ids, special=True).decode() == text
    assert llm.token_eos() == tiny_models.TOKEN_IDS["<|im_end|>"]
    assert llm.n_vocab() == 1024


@pytest.mark.parametrize("config, outtype", CASES)
def test_llamacpp_logits_match_transformers(tiny_gguf, tiny_reference, hf_tokenizer, config, outtype):
    llm = _load(tiny_gguf(config, outtype))
    model = tiny_reference(config)
    for prompt in PROMPTS:
        ids = hf_tokenizer(prompt)["input_ids"]
        ref = tiny_models.reference_logits(model, ids).numpy()
        llm.reset()
        llm.eval(ids)
        got = np.asarray(llm.scores[: len(ids)])
        assert got.shape == ref.shape
        rel = np.abs(got - ref).max() / np.abs(ref).max()
        assert rel <= REL_TOLERANCE[outtype], f"{config}/{outtype}: relative logit error {rel:.3g}"
        if outtype == "q4_0":
            assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] >= Q4_0_MIN_CORRELATION


@pytest.mark.parametrize("outtype", ["f32", "f16", "q8_0", "q4_0"])
@pytest.mark.parametrize("use_repack", [False, True])
def test_our_runtime_matches_llamacpp_on_the_same_file(tiny_gguf, hf_tokenizer, outtype, use_repack):
    """Same file, same ggml kernels: our logits follow llama.cpp's at every position."""
    import omnimem_cpp as om

    path = tiny_gguf("base", outtype)
    llm = _load(path)
    ids = hf_tokenizer(PROMPTS[0])["input_ids"]
    llm.eval(ids)
    theirs = np.asarray(llm.scores[: len(ids)])
    with om.Model(path, n_threads=2, use_repack=use_repack) as model, model.stream(kv_type="f32", n_ctx=256) as s:
        ours = []
        for t in ids:
            s.feed_tokens([t])
            ours.append(s.logits())
    rel = np.abs(np.array(ours) - theirs).max() / np.abs(theirs).max()
    assert rel <= OURS_VS_LLAMACPP_TOLERANCE[outtype], f"{outtype}: relative logit difference {rel:.3g}"
