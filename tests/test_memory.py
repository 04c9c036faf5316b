"""The cache manager: the native row selection against an independent numpy implementation of the method's
formulas, compaction inside a stream against transformers (a gathered cache, the kept sets of every layer),
the invariants after every compaction, budgets, text cap, rollback rules and bounded memory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import omnimem_cpp as om
from omnimem_cpp.errors import InvalidArgumentError

TEXT, VISUAL, AUDIO = 0, 1, 2


# --- an independent implementation of the method (omnimem-method.md §3) and the baselines ----------------

def sampled_queries(c, score_queries):
    """The chunk rows whose queries measure the attention received (every ceil(c / score_queries)-th back from
    the last), and the weight each carries: all c with weight 1 when score_queries is 0 or at least c."""
    if score_queries == 0 or score_queries >= c:
        return np.arange(c), 1.0
    rows = np.arange(c - 1, -1, -math.ceil(c / score_queries))[::-1]
    return rows, c / len(rows)


def reference_importance(queries, keys, history, score_queries=0):
    """a_j = sum over the chunk's queries of softmax_j((1/H) sum_h q_h . k_g(h) / sqrt(d)), causal; memory
    rows averaged with their history. With score_queries, the sum over that many evenly spaced queries,
    scaled to the chunk."""
    n, c = keys.shape[0], queries.shape[0]
    n_head, head_dim = queries.shape[1], queries.shape[2]
    repeated = np.repeat(keys, n_head // keys.shape[1], axis=1).astype(np.float64)      # [n, H, d]
    logits = np.einsum("chd,nhd->cn", queries.astype(np.float64), repeated) / (n_head * math.sqrt(head_dim))
    for i in range(c):
        logits[i, n - c + i + 1:] = -np.inf
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    rows, weight = sampled_queries(c, score_queries)
    received = weight * probs[rows].sum(axis=0)
    if history is not None:
        received[: n - c] = (received[: n - c] + history) / 2
    return received


def patch_neighbours(modality, pos):
    """Each visual row's nearest visual rows at the same (h, w) position before and after it (-1: none)."""
    n = len(modality)
    before, after = np.full(n, -1), np.full(n, -1)
    for j in np.flatnonzero(modality == VISUAL):
        same = np.flatnonzero((modality == VISUAL) & (pos[:, 1] == pos[j, 1]) & (pos[:, 2] == pos[j, 2]))
        earlier, later = same[same < j], same[same > j]
        before[j] = earlier[-1] if earlier.size else -1
        after[j] = later[0] if later.size else -1
    return before, after


def reference_scores(hidden, importance, lam, modality, pos=None, neighbours="sequence"):
    """p_j = spread_j * a_j^lambda with spread = sqrt(max(0, 1 - s / 2)), s the sum of the cosines with the
    rows before and after (a missing one: 1). With "frame" a visual row's s is over its patch in the frames
    before and after; with "both" its spread is the sequence one times the mean frame spread of the visual
    rows of its frame (a run of visual rows at one temporal position)."""
    unit = hidden / np.linalg.norm(hidden, axis=1, keepdims=True)
    modality, n = np.asarray(modality), len(unit)

    def spread(j, sides):
        s = sum(1.0 if o < 0 or o >= n else float(unit[j] @ unit[o]) for o in sides)
        return math.sqrt(max(0.0, 1.0 - s / 2))

    p = np.array([spread(j, (j - 1, j + 1)) for j in range(n)])
    if neighbours != "sequence":
        before, after = patch_neighbours(modality, pos)
        visual = np.flatnonzero(modality == VISUAL)
        in_time = {j: spread(j, (before[j], after[j])) for j in visual}
        if neighbours == "frame":
            for j in visual:
                p[j] = in_time[j]
        else:
            frame, frames = {}, []
            for j in visual:
                if not (j - 1 in frame and pos[j - 1, 0] == pos[j, 0]):
                    frames.append([])
                frame[j] = len(frames) - 1
                frames[-1].append(j)
            for j in visual:
                p[j] *= np.mean([in_time[k] for k in frames[frame[j]]])
    return p * importance ** lam


def reversed_bits(seq):
    """Each 32-bit index with its bits in reverse order (the van der Corput sequence, scaled to 2^32)."""
    return np.array([int(f"{int(i):032b}"[::-1], 2) for i in seq], dtype=np.uint64)


def splitmix64(x):
    """SplitMix64's output function on uint64 values (Steele, Lea and Flood, 2014)."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def reference_select(policy, modality, budget, *, hidden=None, queries=None, keys=None, history=None, lam=0.02,
                     n_sink=4, score_queries=32, seq=None, seed=0, pos=None, neighbours="sequence"):
    modality = np.asarray(modality)
    n = modality.size
    seq = np.arange(n) if seq is None else np.asarray(seq)
    importance = (reference_importance(queries, keys, history, score_queries) if queries is not None
                  else np.zeros(n))
    text = np.flatnonzero(modality == TEXT)
    audio, visual = np.flatnonzero(modality == AUDIO), np.flatnonzero(modality == VISUAL)
    media = np.flatnonzero(modality != TEXT)
    k = min(budget[0] + budget[1], media.size)

    def top(rows, score, count):
        return rows[np.argsort(-score[rows], kind="stable")[:count]]

    if policy == "omnimem":
        p = reference_scores(hidden, importance, lam, modality, pos, neighbours)
        kept = np.concatenate([top(audio, p, budget[0]), top(visual, p, budget[1])])
    elif policy == "omnimem-nosplit":
        kept = top(media, reference_scores(hidden, importance, lam, modality, pos, neighbours), k)
    elif policy == "attention-topk":
        kept = top(media, importance, k)
    elif policy == "sink-window":
        sink = min(n_sink, k)
        kept = np.concatenate([media[:sink], media[media.size - (k - sink):]])
    elif policy == "uniform":     # the smallest reversed indices first
        kept = media[np.argsort(reversed_bits(seq[media]), kind="stable")[:k]]
    elif policy == "random":      # the highest seeded hashes of the indices first
        hashes = splitmix64((np.uint64(seed) << np.uint64(32)) | seq[media].astype(np.uint64))
        kept = media[np.argsort(~hashes, kind="stable")[:k]]
    else:
        raise ValueError(policy)
    return np.sort(np.concatenate([text, kept]).astype(int)), importance


def random_layer(rng, n, c, n_head=4, n_head_kv=2, head_dim=8, dim=16, kinds=(TEXT, VISUAL, AUDIO),
                 weights=(0.2, 0.6, 0.2)):
    return dict(
        modality=rng.choice(kinds, size=n, p=weights).astype(np.int8),
        hidden=rng.normal(size=(n, dim)).astype(np.float32),
        queries=rng.normal(size=(c, n_head, head_dim)).astype(np.float32),
        keys=rng.normal(size=(n, n_head_kv, head_dim)).astype(np.float32),
    )


@pytest.mark.parametrize("policy", ["omnimem", "omnimem-nosplit", "attention-topk", "sink-window", "uniform",
                                    "random"])
@pytest.mark.parametrize("heads", [(4, 4), (4, 2), (8, 2)])
@pytest.mark.parametrize("with_history", [False, True])
@pytest.mark.parametrize("score_queries", [0, 4, 32])
def test_native_selection_equals_the_numpy_formulas(policy, heads, with_history, score_queries):
    rng = np.random.default_rng(hash((policy, heads, with_history)) % 2**32)
    for n, c, budget in [(60, 12, (5, 17)), (33, 33, (3, 9)), (80, 5, (0, 30)), (50, 10, (40, 1))]:
        layer = random_layer(rng, n, c, n_head=heads[0], n_head_kv=heads[1])
        history = rng.uniform(0, 3, n - c).astype(np.float32) if with_history else None
        kept, importance = om.memory.select(policy=policy, budget=budget, history=history, lam=0.3,
                                            score_queries=score_queries, **layer)
        want, want_importance = reference_select(policy, layer["modality"], budget, history=history, lam=0.3,
                                                 score_queries=score_queries,
                                                 **{k: v for k, v in layer.items() if k != "modality"})
        np.testing.assert_array_equal(kept, want)
        if policy in ("omnimem", "omnimem-nosplit", "attention-topk"):
            np.testing.assert_allclose(importance, want_importance, rtol=1e-5, atol=1e-6)
            assert importance[n - c:].sum() <= c + 1e-3   # each query distributes one unit of attention


def framed_layer(rng, n_chunks, grid=(2, 3), dim=16, drop=0.3):
    """Chunks of a few audio rows and two frames of a grid of patches (each at its (t, h, w)), text here and
    there, and a share of the rows dropped at random, as a compaction leaves a layer."""
    mods, pos = [], []
    for c in range(n_chunks):
        t = 50 * c
        mods += [AUDIO] * 3
        pos += [(t + i, t + i, t + i) for i in range(3)]
        for frame in range(2):
            mods += [VISUAL] * (grid[0] * grid[1])
            pos += [(t + 25 * frame, 1 + h, 1 + w) for h in range(grid[0]) for w in range(grid[1])]
        if rng.random() < 0.3:
            mods.append(TEXT)
            pos.append((t + 49,) * 3)
    kept = rng.random(len(mods)) >= drop
    n = int(kept.sum())
    return dict(modality=np.array(mods, np.int8)[kept], pos=np.array(pos, np.int32)[kept],
                hidden=rng.normal(size=(n, dim)).astype(np.float32))


@pytest.mark.parametrize("policy", ["omnimem", "omnimem-nosplit"])
@pytest.mark.parametrize("with_attention", [False, True])
@pytest.mark.parametrize("neighbours", ["frame", "both"])
def test_frame_neighbours_equal_the_numpy_formulas(policy, with_attention, neighbours):
    """With neighbours="frame" a visual row's redundancy is its cosines with its patch (same h and w) in the
    nearest frames held before and after it; with "both" its sequence spread is weighed by how much its frame
    changed from the frames around it; audio and text rows keep the rows next to them."""
    rng = np.random.default_rng(11)
    differ = []
    for n_chunks, budget in [(6, (4, 10)), (10, (2, 30)), (3, (0, 5))]:
        layer = framed_layer(rng, n_chunks)
        n, c = len(layer["modality"]), 8
        attention, lam = {}, 0.0       # no attention measured: lambda 0, or every score would be 0
        if with_attention:
            attention, lam = dict(queries=rng.normal(size=(c, 4, 8)).astype(np.float32),
                                  keys=rng.normal(size=(n, 2, 8)).astype(np.float32)), 0.3
        kept, _ = om.memory.select(policy=policy, budget=budget, neighbours=neighbours, lam=lam, **layer,
                                   **attention)
        want, _ = reference_select(policy, layer["modality"], budget, hidden=layer["hidden"], lam=lam,
                                   pos=layer["pos"], neighbours=neighbours, **attention)
        np.testing.assert_array_equal(kept, want)
        sequence, _ = om.memory.select(policy=policy, budget=budget, lam=lam, **layer, **attention)
        differ.append(not np.array_equal(sequence, kept))
    assert any(differ)                                    # the neighbours do change what is kept


def test_frame_neighbours_keep_the_frame_that_changed():
    """Six frames of four patches, each frame repeating the one before except the fourth, whose patches are
    the others' turned around: measured against the frames before and after, the changed frame's patches
    differ from both neighbours and those of the frames beside it from one, so a budget of one frame keeps
    the changed one."""
    rng = np.random.default_rng(5)
    still = rng.normal(size=(4, 16))
    changed = -still
    hidden = np.concatenate([changed if f == 3 else still for f in range(6)]).astype(np.float32)
    pos = np.array([(25 * f, 1 + p // 2, 1 + p % 2) for f in range(6) for p in range(4)], np.int32)
    kept, _ = om.memory.select(policy="omnimem", budget=(0, 4), neighbours="frame", lam=0.0,
                               modality=np.full(24, VISUAL, np.int8), hidden=hidden, pos=pos)
    np.testing.assert_array_equal(kept, np.arange(12, 16))


@pytest.mark.parametrize("kinds", [(TEXT, VISUAL), (TEXT, AUDIO), (VISUAL,), (AUDIO,), (TEXT,)])
@pytest.mark.parametrize("budget", [(0, 0), (1, 1), (0, 1), (1000, 1000)])
def test_selection_edge_cases(kinds, budget):
    rng = np.random.default_rng(7)
    weights = np.ones(len(kinds)) / len(kinds)
    layer = random_layer(rng, 30, 6, kinds=kinds, weights=weights)
    for policy in ("omnimem", "omnimem-nosplit", "attention-topk", "sink-window", "uniform", "random"):
        kept, _ = om.memory.select(policy=policy, budget=budget, **layer)
        mods = layer["modality"]
        assert np.all(np.diff(kept) > 0)
        assert set(np.flatnonzero(mods == TEXT)) <= set(kept.tolist())          # text is always kept
        n_audio, n_visual = (mods[kept] == AUDIO).sum(), (mods[kept] == VISUAL).sum()
        if policy == "omnimem":
            assert n_audio == min(budget[0], (mods == AUDIO).sum())
            assert n_visual == min(budget[1], (mods == VISUAL).sum())
        else:
            assert n_audio + n_visual == min(sum(budget), (mods != TEXT).sum())
        want, _ = reference_select(policy, mods, budget, hidden=layer["hidden"], queries=layer["queries"],
                                   keys=layer["keys"])
        np.testing.assert_array_equal(kept, want)


def test_random_policy_is_seeded_and_lambda_zero_needs_no_attention():
    rng = np.random.default_rng(3)
    layer = random_layer(rng, 40, 8)
    a, _ = om.memory.select(policy="random", budget=(4, 6), seed=1, **layer)
    b, _ = om.memory.select(policy="random", budget=(4, 6), seed=1, **layer)
    c, _ = om.memory.select(policy="random", budget=(4, 6), seed=2, **layer)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    kept, importance = om.memory.select(policy="omnimem", budget=(4, 6), lam=0.0, modality=layer["modality"],
                                        hidden=layer["hidden"])
    want, _ = reference_select("omnimem", layer["modality"], (4, 6), hidden=layer["hidden"], lam=0.0)
    np.testing.assert_array_equal(kept, want)
    assert not importance.any()


def test_selection_rejects_bad_arrays():
    rng = np.random.default_rng(0)
    layer = random_layer(rng, 20, 4)
    with pytest.raises(InvalidArgumentError, match="hidden"):
        om.memory.select(policy="omnimem", budget=(1, 1), modality=layer["modality"], hidden=layer["hidden"][:5])
    with pytest.raises(InvalidArgumentError, match="redundancy vectors"):
        om.memory.select(policy="omnimem", budget=(1, 1), modality=layer["modality"])
    with pytest.raises(InvalidArgumentError, match="budgets must not be negative"):
        om.memory.select(policy="uniform", budget=(-1, 1), modality=layer["modality"])
    with pytest.raises(InvalidArgumentError, match="modality values"):
        om.memory.select(policy="uniform", budget=(1, 1), modality=np.full(20, 7))
    with pytest.raises(InvalidArgumentError, match="unknown policy"):
        om.memory.select(policy="h2o", budget=(1, 1), modality=layer["modality"])
    with pytest.raises(InvalidArgumentError, match="seq must be"):
        om.memory.select(policy="uniform", budget=(1, 1), modality=layer["modality"], seq=np.arange(5))
    with pytest.raises(InvalidArgumentError, match="ascend"):
        om.memory.select(policy="uniform", budget=(1, 1), modality=layer["modality"], seq=np.arange(20)[::-1])
    with pytest.raises(InvalidArgumentError, match="positions"):
        om.memory.select(policy="omnimem", budget=(1, 1), neighbours="frame", **layer)
    with pytest.raises(InvalidArgumentError, match="pos must be"):
        om.memory.select(policy="omnimem", budget=(1, 1), neighbours="frame", pos=np.zeros((20, 2)), **layer)
    with pytest.raises(InvalidArgumentError, match="unknown neighbours"):
        om.memory.select(policy="omnimem", budget=(1, 1), neighbours="patch", **layer)


# --- budgets ------------------------------------------------------------------------------------------------

def test_budget_specs_parse_and_resolve(tmp_path):
    assert om.Budget.parse("8k").tokens == 8192 and om.Budget.parse(512).tokens == 512
    assert om.Budget.parse("2GB").bytes == 2 * 10**9 and om.Budget.parse("1.5 MiB").bytes == 3 * 2**19
    assert om.Budget(tokens=600).resolve(3, 100, 10) == [(100, 500)] * 3   # audio = B / (1 + r), r = 5
    table = tmp_path / "budget.json"
    table.write_text('{"layers": [[10, 30], [20, 40]]}')
    assert om.Budget.parse(str(table)).resolve(2, 100, 10) == [(10, 30), (20, 40)]
    scaled = om.Budget(table=((10, 30), (20, 40)), tokens=25).resolve(2, 100, 10)
    assert scaled == [(5, 15), (10, 20)]                                    # the table's shape at 25 per layer
    rows = om.Budget(bytes=10**6).resolve(4, 256, 100)
    assert 4 * 256 * (rows[0][0] + rows[0][1] + 100) <= 10**6
    with pytest.raises(InvalidArgumentError, match="too small"):
        om.Budget(bytes=50_000).resolve(4, 256, 100)
    with pytest.raises(InvalidArgumentError, match="layers"):
        om.Budget.parse(str(table)).resolve(3, 100, 10)
    for bad in ("lots", "8q", "-5"):
        with pytest.raises(InvalidArgumentError):
            om.Budget.parse(bad)


# --- compaction inside a stream -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(tiny_gguf):
    with om.Model(tiny_gguf("base", "f32"), n_threads=2) as m:
        yield m


def scenario(ref, n_prefix=6, chunks=(30, 30, 30), seed=0, fixed_grid=False):
    """Token-embedding text prefix, then chunks of media rows with random embeddings (stand-ins for encoder
    outputs) at TMRoPE-like positions, then a text question. Returns embeddings [n, d], positions [n, 3],
    modality [n], and where each piece ends. With fixed_grid the rows' (h, w) repeat a 2 x 2 grid from the
    stream's start, as a video's patches do, instead of starting again at each chunk's position."""
    rng = np.random.default_rng(seed)
    ids = torch.tensor(rng.integers(0, 1000, n_prefix + 4))
    text_embd = ref.get_input_embeddings()(ids).detach().numpy()
    embd, pos, mods, ends = [text_embd[:n_prefix]], [np.repeat(np.arange(n_prefix)[:, None], 3, 1)], \
        [np.zeros(n_prefix, np.int8)], [n_prefix]
    p = n_prefix
    for n in chunks:
        embd.append(rng.normal(0, 1, (n, text_embd.shape[1])).astype(np.float32))
        m = rng.choice([VISUAL, AUDIO], size=n, p=[0.75, 0.25]).astype(np.int8)
        k = np.arange(n)
        grid = n_prefix if fixed_grid else p
        pos.append(np.stack([p + k // 4, grid + (k % 4) // 2, grid + k % 2], axis=1))
        mods.append(m)
        p += n // 4 + 1
        ends.append(ends[-1] + n)
    embd.append(text_embd[n_prefix:])
    pos.append(np.repeat(np.arange(p, p + 4)[:, None], 3, 1))
    mods.append(np.zeros(4, np.int8))
    ends.append(ends[-1] + 4)
    return np.concatenate(embd), np.concatenate(pos).astype(np.int32), np.concatenate(mods), ends


def feed_scenario(s, embd, pos, mods, ends):
    start = 0
    for end in ends:
        s.feed_embeddings(embd[start:end], pos[start:end], mods[start:end])
        start = end


def test_budget_above_the_tokens_present_changes_nothing(model, tiny_reference):
    embd, pos, mods, ends = scenario(tiny_reference("base"))
    results = []
    for policy, budget in [("full", None), ("omnimem", 10_000), ("sink-window", 10_000), ("random", 10_000)]:
        with model.stream(policy, budget=budget, kv_type="f32") as s:
            feed_scenario(s, embd, pos, mods, ends)
            results.append(s.logits())
            assert s.stats().compactions == 0
            assert all(np.array_equal(s.layer_tokens(il), np.arange(len(mods))) for il in range(2))
    for logits in results[1:]:
        np.testing.assert_array_equal(logits, results[0])


def test_compaction_is_a_gather_of_the_kept_rows(model, tiny_reference):
    """After a compaction the next logits equal transformers' on its own KV cache with the same rows kept."""
    ref = tiny_reference("base")
    embd, pos, mods, ends = scenario(ref, chunks=(20, 30))   # one compaction: after the second chunk
    with model.stream("uniform", budget=om.Budget(tokens=24), kv_type="f32") as s:
        start = 0
        for end in ends[:-1]:
            s.feed_embeddings(embd[start:end], pos[start:end], mods[start:end])
            start = end
        kept = s.layer_tokens(0)
        assert s.stats().compactions == 1 and len(kept) == 6 + 24
        assert all(np.array_equal(s.layer_tokens(il), kept) for il in range(2))
        rows = s.layer_rows(1)          # each kept row says where and what it was, as it was fed
        np.testing.assert_array_equal(rows["token"], kept)
        np.testing.assert_array_equal(rows["pos"], pos[kept])
        np.testing.assert_array_equal(rows["modality"], mods[kept])
        s.feed_embeddings(embd[start:], pos[start:], mods[start:])
        ours = s.logits()

    n_memory = ends[-2]
    as_torch = lambda a: torch.from_numpy(np.ascontiguousarray(a))   # noqa: E731
    with torch.no_grad():
        cache = ref(inputs_embeds=as_torch(embd[:n_memory])[None], position_ids=as_torch(pos[:n_memory].T)[:, None],
                    use_cache=True).past_key_values
        for layer in cache.layers:
            layer.keys = layer.keys[:, :, kept]
            layer.values = layer.values[:, :, kept]
        expected = ref(inputs_embeds=as_torch(embd[n_memory:])[None], position_ids=as_torch(pos[n_memory:].T)[:, None],
                       past_key_values=cache).logits[0, -1].numpy()
    assert np.abs(ours - expected).max() / np.abs(expected).max() <= 1e-4


def transformers_layer_signals(ref, embd, pos):
    """Per layer: the layer-input hidden states, V rows, and the queries and keys after RoPE."""
    from transformers.models.qwen2_5_omni import modeling_qwen2_5_omni as modeling

    captured = []
    original = modeling.apply_multimodal_rotary_pos_emb

    def capture(q, k, *args, **kw):
        q, k = original(q, k, *args, **kw)
        captured.append((q[0].transpose(0, 1).numpy().copy(), k[0].transpose(0, 1).numpy().copy()))
        return q, k

    modeling.apply_multimodal_rotary_pos_emb = capture
    try:
        with torch.no_grad():
            out = ref(inputs_embeds=torch.from_numpy(embd)[None], position_ids=torch.from_numpy(pos.T.copy())[:, None],
                      output_hidden_states=True)
    finally:
        modeling.apply_multimodal_rotary_pos_emb = original
    layers = ref.model.layers
    signals = []
    with torch.no_grad():
        for il, layer in enumerate(layers):
            h = out.hidden_states[il][0]
            v = layer.self_attn.v_proj(layer.input_layernorm(h)).numpy()
            signals.append(dict(hidden=h.numpy(), value=v, queries=captured[il][0], keys=captured[il][1]))
    return signals


@pytest.mark.parametrize("policy,redundancy", [("omnimem", "hidden"), ("omnimem", "value"),
                                               ("omnimem-nosplit", "hidden"), ("attention-topk", "value")])
def test_every_layer_keeps_what_the_method_selects_from_transformers_signals(model, tiny_reference, policy,
                                                                            redundancy):
    """The first compaction of a stream keeps, in every layer, the rows the numpy method picks from
    transformers' hidden states, V rows, queries and keys of the same prompt."""
    ref = tiny_reference("base")
    embd, pos, mods, ends = scenario(ref, chunks=(6, 40), seed=1)
    n = ends[-2]
    budget = (6, 20)
    table = om.Budget(table=(budget, budget))
    with model.stream(policy, budget=table, kv_type="f32", redundancy=redundancy) as s:
        s.feed_embeddings(embd[: ends[0]], pos[: ends[0]], mods[: ends[0]])
        s.feed_embeddings(embd[ends[0]: ends[1]], pos[ends[0]: ends[1]], mods[ends[0]: ends[1]])
        assert s.stats().compactions == 0                   # 6 media rows fit in any budget
        s.feed_embeddings(embd[ends[1]: n], pos[ends[1]: n], mods[ends[1]: n])
        assert s.stats().compactions == 1
        kept = [s.layer_tokens(il) for il in range(2)]
    signals = transformers_layer_signals(ref, embd[:n], pos[:n])
    c = n - ends[1]
    for il, sig in enumerate(signals):
        want, _ = reference_select(policy, mods[:n], budget, hidden=sig[redundancy], queries=sig["queries"][n - c:],
                                   keys=sig["keys"])
        np.testing.assert_array_equal(kept[il], want, err_msg=f"layer {il}")
    assert not np.array_equal(kept[0], kept[1])             # layers choose independently


@pytest.mark.parametrize("neighbours", ["sequence", "frame", "both"])
def test_redundancy_kept_between_compactions_equals_measuring_it_afresh(model, tiny_reference, neighbours):
    """A row's cosine with its neighbour is measured once and kept until another row follows it (a gap left
    by a compaction, new rows after a rollback). Layer 0's redundancy vectors are the fed embeddings
    themselves, so at every compaction its kept rows must be what the numpy method picks from scratch among
    the rows it held and the chunk's."""
    embd, pos, mods, ends = scenario(tiny_reference("base"), chunks=(40,) * 6, seed=4,
                                     fixed_grid=neighbours != "sequence")
    budget = (6, 20)
    with model.stream("omnimem", budget=om.Budget(table=(budget, budget)), kv_type="f32", redundancy="hidden",
                      lam=0.0, neighbours=neighbours) as s:
        s.feed_embeddings(embd[: ends[0]], pos[: ends[0]], mods[: ends[0]])
        held = s.layer_tokens(0)
        for start, end in zip(ends[:-2], ends[1:-1]):
            s.feed_embeddings(embd[start:end], pos[start:end], mods[start:end])
            rows = np.concatenate([held, np.arange(start, end)])
            picked, _ = reference_select("omnimem", mods[rows], budget, hidden=embd[rows], lam=0.0, pos=pos[rows],
                                         neighbours=neighbours)
            held = s.layer_tokens(0)
            np.testing.assert_array_equal(held, rows[picked], err_msg=f"after the chunk ending at {end}")
            # text rows fed and rolled back leave a last row whose neighbour is gone
            question = slice(ends[-2], ends[-1])
            s.feed_embeddings(embd[question], pos[question], mods[question])
            s.rollback(end)
        assert s.stats().compactions == len(ends) - 2


@pytest.mark.parametrize("policy", list(om.POLICIES))
def test_invariants_after_every_compaction(model, tiny_reference, policy):
    embd, pos, mods, ends = scenario(tiny_reference("base"), chunks=(40,) * 8, seed=2)
    budget = (6, 18)
    bounded = policy != "full"
    with model.stream(policy, budget=om.Budget(table=(budget, budget)) if bounded else None, n_extra=64) as s:
        previous = [np.arange(0)] * 2
        start = 0
        for end in ends:
            s.feed_embeddings(embd[start:end], pos[start:end], mods[start:end])
            stats = s.stats()
            for il in range(2):
                tokens = s.layer_tokens(il)
                assert np.all(np.diff(tokens) > 0)                                    # order preserved
                assert set(np.flatnonzero(mods[:end] == TEXT)) <= set(tokens.tolist())  # text kept
                # nothing comes back once dropped: kept = a subset of (kept before + this feed)
                assert set(tokens.tolist()) <= set(previous[il].tolist()) | set(range(start, end))
                kept_mods = mods[tokens]
                n_audio, n_visual = (kept_mods == AUDIO).sum(), (kept_mods == VISUAL).sum()
                assert stats.layers[il].rows == {"text": int((kept_mods == TEXT).sum()), "visual": int(n_visual),
                                                 "audio": int(n_audio)}
                if not bounded:
                    assert tokens.size == end
                elif policy == "omnimem":
                    assert n_audio <= budget[0] and n_visual <= budget[1]
                else:
                    assert n_audio + n_visual <= sum(budget)
                previous[il] = tokens
            start = end
        assert (stats.compactions > 0) == bounded
        assert stats.kv_bytes <= stats.kv_bytes_allocated


@pytest.mark.parametrize("policy,seed", [("uniform", 0), ("random", 0), ("random", 7)])
def test_a_stream_keeps_what_one_selection_over_everything_it_was_fed_keeps(model, tiny_reference, policy, seed):
    """UNIFORM and RANDOM rank rows by their index in the stream alone, so compacting after every chunk ends
    where one selection over the whole stream would: the old rows are not thinned out again and again."""
    embd, pos, mods, ends = scenario(tiny_reference("base"), chunks=(40,) * 12, seed=3)
    budget = (6, 18)
    with model.stream(policy, budget=om.Budget(table=(budget, budget)), n_extra=64, seed=seed) as s:
        feed_scenario(s, embd, pos, mods, ends[:-1])
        assert s.stats().compactions == 12              # the first chunk already holds more than 24
        n = ends[-2]
        want, _ = reference_select(policy, mods[:n], budget, seq=np.arange(n), seed=seed)
        for il in range(2):
            np.testing.assert_array_equal(s.layer_tokens(il), want)
    first_half = want[(mods[want] != TEXT) & (want < n // 2)]
    assert len(first_half) >= 6          # a quarter of the 24 media rows kept, at least, from the first half


@pytest.mark.parametrize("n,k", [(1000, 50), (9420, 512), (9420, 4096), (5000, 4999), (64, 64)])
def test_uniform_spreads_the_kept_rows_over_the_whole_stream(n, k):
    offset = 37                                         # a text prompt before the media
    kept, _ = om.memory.select(policy="uniform", budget=(0, k), modality=np.full(n, VISUAL, np.int8),
                               seq=np.arange(offset, offset + n))
    assert len(kept) == k
    gaps = np.diff(np.concatenate([[-1], kept, [n]]))
    assert gaps.max() <= 2 * n / k + 1                  # every 2^m-th row for the smallest 2^m that fits
    random_kept, _ = om.memory.select(policy="random", budget=(0, k), modality=np.full(n, VISUAL, np.int8),
                                      seq=np.arange(offset, offset + n))
    assert len(random_kept) == k
    if k < n:       # a uniform random sample: about as many rows from each half (4 standard deviations)
        half = (random_kept < n // 2).mean()
        assert abs(half - 0.5) <= 4 * np.sqrt(0.25 / k) + 1 / k


def test_text_cap_keeps_the_prompt_and_evicts_the_oldest_later_text(model, tiny_reference):
    embd, pos, mods, ends = scenario(tiny_reference("base"), n_prefix=6, chunks=(20, 20, 20), seed=3)
    later_text = []
    with model.stream("omnimem", budget=8, text_cap=5, n_extra=64) as s:
        s.feed_embeddings(embd[:6], pos[:6], mods[:6])        # the prompt before any media: never capped
        for start, end in zip(ends[:-2], ends[1:-1]):
            s.feed_embeddings(embd[start:end], pos[start:end], mods[start:end])
            first = s.n_tokens
            s.feed_tokens([7, 8, 9])                          # text after media: capped at each compaction
            later_text += [first, first + 1, first + 2]
        tokens = s.layer_tokens(0)
    text_kept = [t for t in tokens.tolist() if t < 6 or t in later_text]
    # the last compaction (after the third chunk) saw 6 later text rows and dropped the oldest; the 3 fed
    # after it wait for the next compaction
    assert text_kept == list(range(6)) + later_text[1:]


def test_rollback_and_ask_under_a_budget(model, tiny_reference):
    embd, pos, mods, ends = scenario(tiny_reference("base"), chunks=(40, 40, 40), seed=4)
    with model.stream("omnimem", budget=10, n_extra=64) as s:
        feed_scenario(s, embd[: ends[-2]], pos[: ends[-2]], mods[: ends[-2]], ends[:-1])
        compacted = s.n_tokens
        assert s.stats().compactions >= 1
        with pytest.raises(InvalidArgumentError, match="compacted"):
            s.rollback(ends[0])
        before = [s.layer_tokens(il) for il in range(2)]
        s.feed_tokens([5, 6, 7])
        logits = s.logits()
        s.rollback(compacted)
        s.feed_tokens([5, 6, 7])
        np.testing.assert_array_equal(s.logits(), logits)        # asking does not change the memory
        s.rollback(compacted)
        assert all(np.array_equal(s.layer_tokens(il), before[il]) for il in range(2))
        s.rollback(0)                                            # starting over is always possible
        assert s.n_tokens == 0 and s.layer_tokens(0).size == 0


def test_a_byte_budget_bounds_the_allocation(model):
    row = 2 * model.info.n_head_kv * model.info.n_embd_head * 2  # K + V rows in F16
    with model.stream("omnimem", budget=om.Budget(bytes=200_000), n_extra=64) as s:
        stats = s.stats()
        assert stats.kv_bytes_allocated <= 200_000
        layer = stats.layers[0]
        assert layer.capacity == sum(layer.budget) + 64          # the budget plus the reserve for text and a chunk
        assert stats.kv_bytes_allocated >= 200_000 - 2 * row * 2 - 3 * 2 * 512   # rounding and alignment only
    with pytest.raises(InvalidArgumentError, match="too small"):
        model.stream("omnimem", budget="100kB")                  # the default reserve alone needs more
    with pytest.raises(InvalidArgumentError, match="needs a budget"):
        model.stream("omnimem")


# --- every policy on real media, saving and restoring ---------------------------------------------------------

def media_clip(seconds, seed):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (int(seconds * 2), 56, 84, 3), dtype=np.uint8)
    t = np.arange(int(seconds * 16000)) / 16000
    pcm = (0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.normal(size=t.size)).astype(np.float32)
    return frames, pcm


@pytest.mark.parametrize("policy", list(om.POLICIES))
def test_every_policy_streams_media_and_answers_within_its_budget(tiny_multimodal, policy):
    frames, pcm = media_clip(12, seed=5)
    budget = None if policy == "full" else 40
    with tiny_multimodal.stream(policy, budget=budget, n_extra=512) as s:
        s.feed("<|im_start|>system\nWatch.<|im_end|>\n<|im_start|>user\n")
        for i in range(6):                                   # 2-second pieces of video with audio
            s.feed(video=frames[4 * i: 4 * i + 4], audio=pcm[32000 * i: 32000 * (i + 1)])
        before = s.stats()
        answer = s.ask("What happened?", max_tokens=4)
        after = s.stats()
    assert isinstance(answer, str)
    assert after.rows == before.rows                          # the question and answer were rolled back
    for layer in before.layers:
        if budget is not None:
            assert layer.rows["audio"] + layer.rows["visual"] <= sum(layer.budget)
            assert layer.compactions > 0
        else:
            assert layer.compactions == 0
    assert before.score_seconds + before.compact_seconds <= before.ingest_seconds


@pytest.mark.parametrize("neighbours", ["sequence", "frame"])
def test_saved_stream_resumes_with_the_same_logits(tiny_multimodal, tmp_path, neighbours):
    frames, pcm = media_clip(9, seed=6)
    path = tmp_path / "stream.oms"
    with tiny_multimodal.stream("omnimem", budget=30, n_extra=512, seed=3, neighbours=neighbours) as s:
        s.feed("<|im_start|>user\n")
        s.feed(video=frames[:8], audio=pcm[:64000])
        s.feed(video=frames[8:11], audio=pcm[64000:90000])  # leaves media pending in the open block
        assert s.media_open and s.stats().compactions > 0
        s.save(path)
        tokens = [s.layer_tokens(il) for il in range(tiny_multimodal.info.n_layer)]
        s.feed(video=frames[11:], audio=pcm[90000:])
        s.feed("What was it?")
        expected = s.logits()
        stats = s.stats()
    with tiny_multimodal.load_stream(path) as restored:
        assert restored.policy == "omnimem" and restored.media_open
        for il in range(tiny_multimodal.info.n_layer):
            np.testing.assert_array_equal(restored.layer_tokens(il), tokens[il])
        restored.feed(video=frames[11:], audio=pcm[90000:])
        restored.feed("What was it?")
        np.testing.assert_array_equal(restored.logits(), expected)
        assert restored.stats().rows == stats.rows and restored.stats().compactions == stats.compactions


def test_broken_or_foreign_stream_files_are_refused(tiny_multimodal, tiny_gguf, tmp_path):
    path = tmp_path / "s.oms"
    with tiny_multimodal.stream("uniform", budget=8) as s:
        s.feed("hello there")
        s.save(path)
    data = path.read_bytes()
    cases = {"truncated": data[: len(data) // 2], "flipped": data[:100] + bytes([data[100] ^ 1]) + data[101:],
             "extra": data + b"\0", "text": b"this is not a stream file at all"}
    for name, content in cases.items():
        bad = tmp_path / f"{name}.oms"
        bad.write_bytes(content)
        with pytest.raises(om.ModelFileError, match="corrupt|not a stream file"):
            tiny_multimodal.load_stream(bad)
    with om.Model(tiny_gguf("gqa4", "f32")) as other, pytest.raises(om.ModelMismatchError, match="another model"):
        other.load_stream(path)
    with pytest.raises(om.ModelNotFoundError):
        tiny_multimodal.load_stream(tmp_path / "missing.oms")
    assert not list(tmp_path.glob("*.part"))


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_a_30_minute_stream_stays_within_its_byte_budget(model):
    """900 two-second chunks (250 visual + 50 audio rows each, as a 2 fps video with audio gives) under a
    byte budget: the allocation never grows, every layer stays in budget, and the process memory is flat."""
    budget = om.Budget(bytes=600_000)
    rng = np.random.default_rng(8)
    chunk = rng.normal(0, 1, (300, model.info.n_embd)).astype(np.float32)
    mods = np.array([VISUAL] * 250 + [AUDIO] * 50, dtype=np.int8)
    k = np.arange(250)
    with model.stream("omnimem", budget=budget, n_extra=512) as s:
        s.feed("Watch this.")
        allocated = s.stats().kv_bytes_allocated
        assert allocated <= 600_000
        rss_after_warmup = None
        for c in range(900):
            p = s.next_position
            visual = np.stack([p + k // 125 * 25, p + (k % 125) // 25, p + k % 25], axis=1)
            audio = np.repeat(p + np.arange(50)[:, None], 3, axis=1)
            s.feed_embeddings(chunk, np.concatenate([visual, audio]).astype(np.int32), mods)
            if c == 150:
                rss_after_warmup = resident_bytes()
        stats = s.stats()
        assert stats.kv_bytes_allocated == allocated and stats.kv_bytes <= allocated
        for layer in stats.layers:
            assert layer.rows["audio"] <= layer.budget[0] and layer.rows["visual"] <= layer.budget[1]
        assert stats.compactions > 850                         # after every chunk once the budget filled
        assert s.next_position > 900 * 50                       # stream time kept growing
        assert resident_bytes() < 1.05 * rss_after_warmup


def test_calibration_signals_equal_transformers(model, tiny_reference):
    """The per-layer entropy and redundancy om_stream_calibrate measures on a chunk equal the same
    quantities computed from transformers' queries, keys and hidden states."""
    from omnimem_cpp._native import check, ffi, lib

    ref = tiny_reference("base")
    embd, pos, mods, ends = scenario(ref, chunks=(20, 40), seed=9)
    n, start = ends[-2], ends[-3]
    with model.stream(kv_type="f32") as s:
        s.feed_embeddings(embd[:start], pos[:start], mods[:start])
        check(lib.om_stream_calibrate(s.handle, True))
        s.feed_embeddings(embd[start:n], pos[start:n], mods[start:n])
        measured = np.empty(2 * 6, dtype=np.float32)
        check(lib.om_stream_get_calibration(s.handle, ffi.from_buffer("float[]", measured), measured.size))
    measured = measured.reshape(2, 3, 2)

    groups = [mods[:n] == AUDIO, mods[:n] == VISUAL, mods[:n] != TEXT]
    for il, sig in enumerate(transformers_layer_signals(ref, embd[:n], pos[:n])):
        q, k = sig["queries"], sig["keys"]
        n_head, head_dim = q.shape[1], q.shape[2]
        repeated = np.repeat(k, n_head // k.shape[1], axis=1).astype(np.float64)
        rows = np.arange(n - 32, n)
        logits = np.einsum("chd,nhd->cn", q[rows].astype(np.float64), repeated) / (n_head * math.sqrt(head_dim))
        for g, in_group in enumerate(groups):
            entropies = []
            for i, row in enumerate(rows):
                s_ = logits[i, : row + 1][in_group[: row + 1]]
                p = np.exp(s_ - s_.max())
                p /= p.sum()
                entropies.append(-(p * np.log(p)).sum())
            chunk_rows = np.flatnonzero(in_group[start:n]) + start
            h = sig["hidden"][chunk_rows].astype(np.float64)
            unit = h / np.linalg.norm(h, axis=1, keepdims=True)
            redundancy = 1 - (unit[:-1] * unit[1:]).sum(axis=1).mean()
            np.testing.assert_allclose(measured[il, g], [np.mean(entropies), redundancy], rtol=1e-4,
                                       err_msg=f"layer {il} group {g}")


def test_allocation_follows_the_method():
    """omnimem-method §2 on hand-made signals, without the layer bounds: the softmax over layers, the
    audio/visual split with ratio r."""
    from omnimem_cpp.calibrate import allocate

    signals = _hand_made_signals()
    entropy, redundancy = signals[..., 0], signals[..., 1]
    table = allocate(signals, 100, temperature=0.5, av_ratio=4.0, bounds=(0.0, math.inf))
    b_all = entropy[:, 2] * np.sqrt((redundancy[:, 0] + redundancy[:, 1]) / 2)
    total = 300 * np.exp(b_all / 0.5) / np.exp(b_all / 0.5).sum()
    b_a, b_v = entropy[:, 0] * np.sqrt(redundancy[:, 0]), entropy[:, 1] * np.sqrt(redundancy[:, 1])
    for (audio, visual), t, a, v in zip(table, total, b_a, b_v):
        assert abs(audio + visual - t) <= 0.5 + 1e-6
        assert abs(audio - t * a / (a + 4.0 * v)) <= 1
    assert table[0][0] + table[0][1] > table[2][0] + table[2][1]    # the layer with more spread gets more
    no_audio = signals.copy()
    no_audio[:, 0, :] = np.nan
    assert all(audio == 0 for audio, _ in allocate(no_audio, 100))


def _hand_made_signals() -> np.ndarray:
    """Three layers' (entropy, redundancy) for audio, visual and both; the first layer's b_all is the
    largest, and at T = 0.5 it would take 71 % of the budget."""
    entropy = np.array([[2.0, 3.0, 3.5], [1.0, 2.0, 2.2], [0.5, 1.0, 1.1]])
    redundancy = np.array([[0.25, 0.16, 0.2], [0.36, 0.09, 0.2], [0.04, 0.01, 0.02]])
    return np.stack([entropy, redundancy], axis=-1)


@pytest.mark.parametrize("temperature", [0.5, 0.2, 0.01])
def test_allocation_keeps_each_layer_within_its_bounds_and_the_budget_whole(temperature):
    """With the bounds (the reference's: half to 1.5 times the average) no layer is starved or hoards, the
    table still holds the whole budget, the layers keep the order of their b_all, and where no bound binds
    (a high temperature flattens the softmax) the table is the unbounded one."""
    from omnimem_cpp.calibrate import LAYER_BOUNDS, allocate

    signals = _hand_made_signals()
    low, high = LAYER_BOUNDS
    table = allocate(signals, 1000, temperature=temperature)
    totals = [a + v for a, v in table]
    assert abs(sum(totals) - 3000) <= 2                          # rounding, per layer
    assert all(low * 1000 - 1 <= t <= high * 1000 + 1 for t in totals)
    assert totals == sorted(totals, reverse=True)                 # b_all falls from the first layer to the last
    if temperature <= 0.2:
        assert totals[0] == high * 1000 and totals[2] == low * 1000
    flat = allocate(signals, 1000, temperature=100.0)
    assert flat == allocate(signals, 1000, temperature=100.0, bounds=(0.0, math.inf))
    with pytest.raises(om.InvalidArgumentError, match="bounds"):
        allocate(signals, 1000, bounds=(1.2, 1.5))