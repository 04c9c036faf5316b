"""Streams: generation against transformers' greedy decoding, sampling, rollback, and the stream's contract on
errors (a failed feed leaves the stream as it was)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import omnimem_cpp as om
from omnimem_cpp import chat


@pytest.fixture(scope="module")
def model(tiny_gguf):
    with om.Model(tiny_gguf("base", "f32"), n_threads=2) as m:
        yield m


def test_greedy_answer_matches_transformers_generate(model, tiny_thinker, tiny_reference):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_thinker("base"))
    context = "Mara rowed past the lighthouse every morning."
    question = "Where did Mara row?"
    prompt = context + chat.user_turn(question)
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        generated = tiny_reference("base").generate(input_ids=ids, max_new_tokens=12, do_sample=False,
                                                    eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
    expected = tokenizer.decode(generated[0, ids.shape[1]:], skip_special_tokens=True)

    with model.stream(kv_type="f32", n_ctx=256) as s:
        s.feed(context)
        assert s.ask(question, max_tokens=12) == expected
        assert "".join(s.ask(question, max_tokens=12, stream=True)) == expected


def test_ask_rolls_back_unless_kept(model):
    with model.stream(n_ctx=256) as s:
        s.feed("Some context to remember.")
        n, before = s.n_tokens, s.logits()
        s.ask("What?", max_tokens=4)
        assert s.n_tokens == n
        s.feed(" More.")
        after_ask = s.logits()
        s.rollback(n)
        s.feed(" More.")
        np.testing.assert_array_equal(s.logits(), after_ask)
        s.rollback(n)
        s.ask("What?", max_tokens=4, keep=True)
        assert s.n_tokens > n
        s.rollback(n)
        s.feed(" More.")
        np.testing.assert_array_equal(s.logits(), after_ask)
        assert before.shape == after_ask.shape


def test_abandoned_streaming_answer_is_rolled_back(model):
    with model.stream(n_ctx=256) as s:
        s.feed("Context.")
        n = s.n_tokens
        pieces = s.ask("Tell me everything.", max_tokens=20, stream=True)
        next(pieces)
        pieces.close()
        assert s.n_tokens == n


def test_interrupted_answer_leaves_the_stream_usable(model):
    with model.stream(n_ctx=256) as s:
        s.feed("Context.")
        n = s.n_tokens
        with pytest.raises(KeyboardInterrupt):
            for i, _ in enumerate(s.ask("Again?", max_tokens=20, stream=True)):
                if i == 1:
                    raise KeyboardInterrupt
        assert s.n_tokens == n
        assert isinstance(s.ask("Again?", max_tokens=3), str)


def test_sampling_is_seeded_and_greedy_is_argmax(model):
    with model.stream(n_ctx=256) as s:
        s.feed("Once upon a time")
        mark = s.n_tokens
        first = s.ask("Continue.", max_tokens=1)
        s.feed_tokens(model.tokenize(chat.user_turn("Continue."), special=True))
        argmax = int(np.argmax(s.logits()))
        assert first == model.detokenize([argmax])
        s.rollback(mark)

        def draw(seed):
            return s.ask("Continue.", max_tokens=12, temperature=1.5, top_k=0, top_p=1.0, seed=seed)

        assert draw(1) == draw(1)
        assert len({draw(seed) for seed in range(6)}) > 1
        # top_k=1 leaves one candidate: sampling at any temperature is greedy
        greedy = s.ask("Continue.", max_tokens=8)
        assert s.ask("Continue.", max_tokens=8, temperature=2.0, top_k=1, seed=7) == greedy


def test_feed_errors_leave_the_stream_unchanged(model):
    with model.stream(n_ctx=16, n_batch=4) as s:
        s.feed_tokens([1, 2, 3])
        logits = s.logits()
        with pytest.raises(om.ContextFullError, match="n_ctx"):
            s.feed_tokens(list(range(20)))  # fails in its fourth batch
        assert s.n_tokens == 3
        with pytest.raises(om.InvalidArgumentError, match="outside the vocabulary"):
            s.feed_tokens([5, model.info.n_vocab])
        with pytest.raises(om.InvalidArgumentError):
            s.logits()  # a failed feed drops the logits instead of leaving stale ones
        s.rollback(3)
        s.feed_tokens([4])
        s.rollback(3)
        with pytest.raises(om.InvalidArgumentError, match="not the end of an earlier feed"):
            s.rollback(2)
        s.feed_tokens([4])
        assert s.n_tokens == 4
        assert not np.array_equal(s.logits(), logits)


def test_closed_handles_raise_clear_errors(tiny_gguf):
    model = om.Model(tiny_gguf("base", "f32"))
    s = model.stream(n_ctx=8)
    model.close()  # closes its streams first
    with pytest.raises(om.InvalidArgumentError, match="closed"):
        s.feed_tokens([1])
    with pytest.raises(om.InvalidArgumentError, match="closed"):
        model.tokenize("x")
    model.close()


def test_model_without_tokenizer_still_runs_token_ids(tiny_gguf):
    with om.Model(tiny_gguf("base", "f32", tokenizer=False)) as model:
        assert not model.info.has_tokenizer
        with pytest.raises(om.NoTokenizerError, match="tokenizer"):
            model.tokenize("hello")
        with model.stream(n_ctx=8) as s:
            s.feed_tokens([1, 2, 3])
            assert s.logits().shape == (model.info.n_vocab,)


def test_model_info_reports_the_file(tiny_gguf, tiny_thinker):
    import json

    text = json.loads((tiny_thinker("gqa4") / "config.json").read_text())["text_config"]
    with om.Model(tiny_gguf("gqa4", "f32")) as model:
        info = model.info
    assert (info.architecture, info.n_layer, info.n_head, info.n_head_kv) == (
        "qwen2vl", text["num_hidden_layers"], text["num_attention_heads"], text["num_key_value_heads"])
    assert info.n_embd_head * info.n_head == text["hidden_size"]
    assert list(info.rope_sections[:3]) == text["rope_scaling"]["mrope_section"]
    assert info.n_vocab == text["vocab_size"]


def test_streams_on_one_model_in_parallel_threads_match_sequential_runs(model):
    """Weights are shared, each stream owns its memory and scheduler: streams fed from several threads at
    once give the logits they give one after another."""
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"Story {i}: " + " ".join(["once upon a time"] * (5 + 3 * i)) for i in range(4)]

    def run(text):
        with model.stream() as s:
            for word in text.split(" ")[::4]:
                s.feed(word)
            return s.logits()

    sequential = [run(t) for t in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(run, texts))
    for a, b in zip(sequential, parallel):
        np.testing.assert_array_equal(a, b)
