"""Stream.profile: per-operation totals against what the GGUF file says a decode step must read, and profiling
leaving the results unchanged."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

import omnimem_cpp as om

# the matrices a decode step multiplies by: every layer's attention and FFN projections, and the output head
MATMUL_WEIGHT = re.compile(r"^(output|blk\.\d+\.(attn_(q|k|v|output)|ffn_(gate|up|down)))\.weight$")
STEPS = 5


@pytest.fixture(scope="module")
def model(tiny_gguf):
    with om.Model(tiny_gguf("base", "f32"), n_threads=2) as m:
        yield m


def test_decode_profile_reads_every_weight_once_per_token(model, tiny_gguf):
    from gguf import GGUFReader

    tensors = GGUFReader(tiny_gguf("base", "f32")).tensors
    weights = [t for t in tensors if MATMUL_WEIGHT.match(t.name)]
    # one single-token product per matrix: the weights, and the token's F32 activations along their first axis
    expected_bytes = sum(int(t.n_bytes) + 4 * int(t.shape[0]) for t in weights)
    embeddings = next(t for t in tensors if t.name == "token_embd.weight")
    embedding_row = int(embeddings.n_bytes) // int(embeddings.shape[1])

    with model.stream(n_ctx=64, kv_type="f16") as s:
        s.feed_tokens([5, 6, 7])
        t0 = time.perf_counter()
        with s.profile() as prof:
            for token in range(10, 10 + STEPS):
                s.feed_tokens([token])
        wall = time.perf_counter() - t0

    mm = prof["MUL_MAT"]
    assert mm.nodes == STEPS * len(weights)
    assert mm.bytes_read == STEPS * expected_bytes
    assert prof["GET_ROWS"].bytes_read == STEPS * (embedding_row + 4)   # one row of the table, one int32 id
    # a product of an [in, out] matrix with one token: in·out multiply-adds
    assert mm.flops == STEPS * sum(2 * int(t.shape[0]) * int(t.shape[1]) for t in weights)
    assert all(op.flops == 0 for op in prof.ops if op.op != "MUL_MAT")
    assert 0 < prof.seconds <= wall
    assert all(op.seconds >= 0 and op.nodes > 0 for op in prof.ops)
    assert [op.seconds for op in prof.ops] == sorted((op.seconds for op in prof.ops), reverse=True)
    assert prof.launch_seconds is not None and prof.launch_seconds < prof.seconds / STEPS
    assert "| MUL_MAT |" in prof.table(per=STEPS)


def test_profiling_leaves_the_logits_unchanged(model):
    ids = [3, 14, 15, 92, 65, 35]
    with model.stream(n_ctx=64) as plain, model.stream(n_ctx=64) as profiled:
        plain.feed_tokens(ids)
        with profiled.profile():
            profiled.feed_tokens(ids)
        np.testing.assert_array_equal(profiled.logits(), plain.logits())
        # off again: the same graphs, computed whole
        plain.feed_tokens([7])
        profiled.feed_tokens([7])
        np.testing.assert_array_equal(profiled.logits(), plain.logits())


def test_profile_starts_from_zero_and_missing_ops_are_named(model):
    with model.stream(n_ctx=64) as s:
        with s.profile() as first:
            for token in (1, 2, 3):
                s.feed_tokens([token])
        with s.profile() as second:
            s.feed_tokens([4])
        assert first["MUL_MAT"].nodes == 3 * second["MUL_MAT"].nodes
        with pytest.raises(KeyError, match="MUL_MAT"):
            second["CONV_2D"]


@pytest.mark.parametrize("score_queries", [0, 5])
def test_attention_received_nodes_are_profiled_apart(model, score_queries):
    """A bounded stream's prefill measures the attention received beside the model: its nodes get entries of
    their own, and its one product per layer multiplies the measured queries with every key
    (2·n_embd_kv·n_kv·n_q FLOPs), so score_queries sets its cost (5 of 20 queries: every fourth)."""
    info = model.info
    n_past, n = 24, 20
    rng = np.random.default_rng(0)

    def media(count: int, start: int):
        pos = np.repeat(np.arange(start, start + count, dtype=np.int32)[:, None], 3, axis=1)
        return rng.normal(size=(count, info.n_embd)).astype(np.float32), pos

    with model.stream(policy="omnimem", budget=16, n_extra=64, score_queries=score_queries) as s:
        s.feed_embeddings(*media(n_past, 0), modality="visual")   # compacted to the budget
        rows = [sum(layer.rows.values()) for layer in s.stats().layers]
        with s.profile() as prof:
            s.feed_embeddings(*media(n, n_past), modality=["visual", "audio"] * (n // 2))
    assert max(rows) < n_past
    n_q = score_queries or n
    products = [op for op in prof.ops if op.scoring and op.op == "MUL_MAT"]
    assert len(products) == 1 and products[0].nodes == info.n_layer
    assert products[0].flops == 2 * info.n_head_kv * info.n_embd_head * n_q * sum(r + n for r in rows)
    assert {"SOFT_MAX", "OUT_PROD"} <= {op.op for op in prof.ops if op.scoring}
    assert 0 < prof.scoring_seconds < prof.seconds
    assert prof["MUL_MAT"].flops > 0   # the model's products stay under their own name
    assert "| MUL_MAT (scoring) |" in prof.table()

    with model.stream(policy="uniform", budget=16, n_extra=64) as s, s.profile() as prof:
        s.feed_embeddings(*media(n_past, 0), modality="visual")
    assert prof.scoring_seconds == 0 and not any(op.scoring for op in prof.ops)
