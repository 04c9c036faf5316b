"""The cache manager from Python: policies, budgets, statistics, and one layer's row selection.

A stream's memory is bounded by a *policy* and a *budget*: after every chunk of media, each decoder layer
whose audio+visual rows exceed its budget keeps only the rows the policy selects. Budgets are given as

* tokens: ``budget=8192`` or ``"8k"`` — audio+visual rows kept per layer on average, split per layer as
  ``audio = B / (1 + r)``, ``visual = B - audio`` (the method's allocation with equal per-layer signals; r = 5);
* bytes: ``budget="2GB"`` — the stream's K/V memory (all layers, text and the chunk in flight included)
  never exceeds it; the token budget is derived from the size of a row;
* a table: ``budget="budget.json"`` (from ``omnimem calibrate``) or ``Budget(table=[[audio, visual], ...])``
  — per-layer budgets; combined with tokens or bytes, the table's shape is kept and its scale adjusted.

Example::

    with model.stream(policy="omnimem", budget="8k") as s:
        ...
        print(s.stats().kv_bytes)

    kept, importance = om.memory.select(policy="omnimem", hidden=h, queries=q, keys=k, modality=m,
                                        budget=(64, 320))
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np

from ._native import check, ffi, lib
from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from .model import Model

__all__ = ["POLICIES", "REDUNDANCY", "NEIGHBOURS", "Budget", "LayerStats", "StreamStats", "select", "AV_RATIO"]

POLICIES = {
    "full": lib.OM_POLICY_FULL,
    "omnimem": lib.OM_POLICY_OMNIMEM,
    "omnimem-nosplit": lib.OM_POLICY_OMNIMEM_NOSPLIT,
    "sink-window": lib.OM_POLICY_SINK_WINDOW,
    "attention-topk": lib.OM_POLICY_ATTENTION_TOPK,
    "uniform": lib.OM_POLICY_UNIFORM,
    "random": lib.OM_POLICY_RANDOM,
}
REDUNDANCY = {"value": lib.OM_REDUNDANCY_VALUE, "hidden": lib.OM_REDUNDANCY_HIDDEN}
# which rows a row's redundancy is measured against (omnimem.h, om_neighbours)
NEIGHBOURS = {"sequence": lib.OM_NEIGHBOURS_SEQUENCE, "frame": lib.OM_NEIGHBOURS_FRAME,
              "both": lib.OM_NEIGHBOURS_BOTH}
AV_RATIO = 5.0          # r: visual budget per audio budget in the default split (the method's best setting)
MODALITIES = {"text": 0, "visual": 1, "audio": 2}

_TOKENS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kK]?)\s*$")
_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)\s*$", re.IGNORECASE)
_BYTE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
# ggml aligns every tensor of a buffer; kept free of the byte budget so the allocation stays under it
_ALIGN_SLACK = 512


@dataclass(frozen=True)
class Budget:
    """A memory budget: ``tokens`` (average audio+visual rows per layer), ``bytes`` (the K/V memory of the
    stream), a per-layer ``table`` of ``[audio, visual]`` rows, or a table with tokens or bytes (the table's
    shape at that scale). Strings and numbers convert with :meth:`parse`."""

    tokens: Optional[int] = None
    bytes: Optional[int] = None
    table: Optional[tuple[tuple[int, int], ...]] = None
    av_ratio: float = AV_RATIO

    def __post_init__(self) -> None:
        if self.tokens is not None and self.bytes is not None:
            raise InvalidArgumentError("give a budget in tokens or in bytes, not both")
        if self.tokens is None and self.bytes is None and self.table is None:
            raise InvalidArgumentError("a budget needs tokens, bytes or a table")
        if self.tokens is not None and self.tokens < 0:
            raise InvalidArgumentError(f"a token budget must not be negative, got {self.tokens}")
        if self.bytes is not None and self.bytes <= 0:
            raise InvalidArgumentError(f"a byte budget must be positive, got {self.bytes}")
        if not self.av_ratio > 0:
            raise InvalidArgumentError(f"av_ratio must be positive, got {self.av_ratio}")
        if self.table is not None:
            table = tuple((int(a), int(v)) for a, v in self.table)
            if not table or any(a < 0 or v < 0 for a, v in table):
                raise InvalidArgumentError("a budget table needs one [audio, visual] pair of non-negative rows per layer")
            object.__setattr__(self, "table", table)

    @classmethod
    def parse(cls, spec: Union["Budget", int, str, os.PathLike, dict]) -> "Budget":
        """``8192`` / ``"8k"`` → tokens; ``"2GB"``, ``"512MiB"`` → bytes; a path to a JSON budget table or its
        parsed dict → table."""
        if isinstance(spec, Budget):
            return spec
        if isinstance(spec, bool):
            raise InvalidArgumentError(f"not a budget: {spec!r}")
        if isinstance(spec, int):
            return cls(tokens=spec)
        if isinstance(spec, dict):
            return cls.from_table_json(spec)
        text = os.fspath(spec)
        m = _TOKENS.match(text)
        if m:
            return cls(tokens=int(round(float(m.group(1)) * (1024 if m.group(2) else 1))))
        m = _BYTES.match(text)
        if m:
            return cls(bytes=int(float(m.group(1)) * _BYTE_UNITS[m.group(2).lower()]))
        if text.endswith(".json") or os.path.exists(text):
            try:
                with open(text, encoding="utf-8") as f:
                    data = json.load(f)
            except FileNotFoundError:
                raise InvalidArgumentError(f"budget table {text!r} does not exist") from None
            except (OSError, ValueError) as e:
                raise InvalidArgumentError(f"budget table {text!r} is not readable JSON: {e}") from None
            return cls.from_table_json(data, source=text)
        raise InvalidArgumentError(f"cannot read the budget {text!r}: use tokens per layer (8192, \"8k\"), bytes "
                                   "(\"2GB\", \"512MiB\") or a budget table (.json from omnimem calibrate)")

    @classmethod
    def from_table_json(cls, data: Any, source: str = "the budget table") -> "Budget":
        layers = data.get("layers") if isinstance(data, dict) else None
        if not isinstance(layers, list) or not all(isinstance(p, list) and len(p) == 2 for p in layers):
            raise InvalidArgumentError(f"{source} has no \"layers\": [[audio, visual], ...] list")
        return cls(table=tuple((int(a), int(v)) for a, v in layers))

    def resolve(self, n_layer: int, row_bytes: int, n_extra: int) -> list[tuple[int, int]]:
        """Per-layer ``(audio, visual)`` rows for a model of ``n_layer`` layers whose rows take ``row_bytes``
        each, with ``n_extra`` rows per layer beyond the budget (text, the chunk in flight)."""
        if self.table is not None and len(self.table) != n_layer:
            raise InvalidArgumentError(f"the budget table has {len(self.table)} layers, the model {n_layer}; "
                                       "calibrate a table for this model")
        average = self.tokens
        if self.bytes is not None:
            rows = (self.bytes - 3 * n_layer * _ALIGN_SLACK) // (n_layer * row_bytes)
            average = rows - n_extra
            if average < 1:
                raise InvalidArgumentError(
                    f"a budget of {self.bytes} bytes is too small: it holds {max(rows, 0)} rows per layer of "
                    f"{row_bytes} bytes, and the stream needs {n_extra} of them for text and the chunk being "
                    f"evaluated; give at least {(n_extra + 64) * n_layer * row_bytes + 3 * n_layer * _ALIGN_SLACK} "
                    "bytes or a smaller n_extra")
        if self.table is None:
            audio = int(round(average / (1.0 + self.av_ratio)))
            return [(audio, average - audio)] * n_layer
        if average is None:
            return list(self.table)
        total = sum(a + v for a, v in self.table)
        if total == 0:
            return list(self.table)
        scale = average * n_layer / total
        # floor keeps a byte budget's sum under its bound
        return [(int(math.floor(a * scale)), int(math.floor(v * scale))) for a, v in self.table]


@dataclass(frozen=True)
class LayerStats:
    """One layer of a stream's memory."""
    rows: dict             # {"text": n, "visual": n, "audio": n}
    budget: Optional[tuple[int, int]]   # (audio, visual); None when unbounded
    capacity: int          # rows allocated
    kv_bytes: int          # bytes of the live rows
    compactions: int


@dataclass(frozen=True)
class StreamStats:
    """What a stream's memory holds and what keeping it bounded cost (see :meth:`Stream.stats`)."""
    n_tokens: int                # tokens fed (the sequence length)
    kv_bytes: int                # bytes of the live rows, all layers
    kv_bytes_allocated: int      # bytes reserved for rows: the memory bound
    compactions: int             # compaction passes
    ingest_seconds: float        # time ingesting media and embeddings (text feeds are not counted)
    score_seconds: float         # redundancy, scores and selection
    compact_seconds: float       # gathering the kept rows on the backend
    layers: list = field(default_factory=list)   # LayerStats per layer

    @property
    def rows(self) -> dict:
        """Rows summed over layers, by modality."""
        return {m: sum(layer.rows[m] for layer in self.layers) for m in MODALITIES}


def read_stats(handle) -> StreamStats:
    s = ffi.new("om_stream_stats *")
    check(lib.om_stream_get_stats(handle, s))
    layers = []
    ls = ffi.new("om_layer_stats *")
    for il in range(s.n_layer):
        check(lib.om_stream_get_layer_stats(handle, il, ls))
        layers.append(LayerStats(
            rows={"text": ls.rows[0], "visual": ls.rows[1], "audio": ls.rows[2]},
            budget=None if ls.budget[0] < 0 else (ls.budget[0], ls.budget[1]),
            capacity=ls.capacity, kv_bytes=ls.kv_bytes, compactions=ls.n_compactions))
    return StreamStats(n_tokens=s.n_tokens, kv_bytes=s.kv_bytes, kv_bytes_allocated=s.kv_bytes_allocated,
                       compactions=s.n_compactions, ingest_seconds=s.t_ingest_s, score_seconds=s.t_score_s,
                       compact_seconds=s.t_compact_s, layers=layers)


def fill_params(memory, *, policy: str, lam: float, n_sink: int, seed: int, text_cap: int, n_extra: int,
                redundancy: str, score_queries: int, neighbours: str) -> None:
    """Writes the policy's parameters into an ``om_memory_params`` (budget excluded)."""
    if policy not in POLICIES:
        raise InvalidArgumentError(f"unknown policy {policy!r}; available: {', '.join(POLICIES)}")
    if redundancy not in REDUNDANCY:
        raise InvalidArgumentError(f"unknown redundancy {redundancy!r}; available: {', '.join(REDUNDANCY)}")
    if neighbours not in NEIGHBOURS:
        raise InvalidArgumentError(f"unknown neighbours {neighbours!r}; available: {', '.join(NEIGHBOURS)}")
    memory.policy = POLICIES[policy]
    memory.lam = lam
    memory.n_sink = n_sink
    memory.seed = seed & 0xFFFFFFFF
    memory.text_cap = text_cap
    memory.n_extra = n_extra
    memory.redundancy = REDUNDANCY[redundancy]
    memory.n_score_queries = score_queries
    memory.neighbours = NEIGHBOURS[neighbours]


def stream_budget(model: "Model", params, budget: Union[Budget, int, str, os.PathLike, dict, None]):
    """Resolves ``budget`` for a stream of ``model`` with ``params`` (an ``om_stream_params``) and points
    ``params.memory.budget`` at the table; returns the cffi array, which must stay alive until init."""
    if budget is None:
        if params.memory.policy != lib.OM_POLICY_FULL:
            raise InvalidArgumentError("this policy needs a budget: tokens per layer (budget=\"8k\"), bytes "
                                       "(budget=\"2GB\") or a table (budget=\"budget.json\")")
        return None
    spec = Budget.parse(budget)
    table = spec.resolve(model.info.n_layer, int(lib.om_stream_row_bytes(model.handle, params)),
                         int(lib.om_stream_extra_rows(params)))
    array = ffi.new("int32_t[]", [x for pair in table for x in pair])
    params.memory.budget = array
    return array


def select(
    *,
    policy: str = "omnimem",
    modality: Union[Sequence[int], np.ndarray],
    budget: tuple[int, int],
    hidden: Optional[np.ndarray] = None,
    queries: Optional[np.ndarray] = None,
    keys: Optional[np.ndarray] = None,
    history: Optional[np.ndarray] = None,
    seq: Optional[Union[Sequence[int], np.ndarray]] = None,
    pos: Optional[np.ndarray] = None,
    neighbours: str = "sequence",
    lam: float = 0.02,
    n_sink: int = 4,
    seed: int = 0,
    score_queries: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """One layer's selection on given arrays, with the same native code a stream compacts with.

    Args:
        modality: ``[n]`` int8 — 0 text, 1 visual, 2 audio — in sequence order; the last ``c`` rows (those
            ``queries`` has) are the chunk just evaluated.
        budget: ``(audio, visual)`` rows to keep.
        hidden: ``[n, d]`` redundancy vectors (the layer-input hidden states in the method's exact mode).
        queries: ``[c, n_head, head_dim]`` the chunk's queries after RoPE; keys: ``[n, n_head_kv, head_dim]``
            after RoPE.
        history: ``[n - c]`` running importance of the memory rows, or None.
        seq: ``[n]`` each row's index in the stream, ascending (``uniform`` and ``random`` rank the rows by
            it, so that a stream keeps the same rows whenever it compacts), or None: ``0 .. n - 1``.
        pos: ``[n, 3]`` each row's M-RoPE position ``(t, h, w)``, as :meth:`Stream.layer_rows` gives it; needed
            with ``neighbours="frame"`` or ``"both"``.
        neighbours: ``"sequence"`` (the method's: the rows before and after), ``"frame"`` (a visual row's
            patch in the frames before and after) or ``"both"`` (the first, weighed by how much a visual
            row's frame changed from the frames around it), as a stream's.
        score_queries: at most how many of the chunk's queries measure the attention received, as in a stream
            (see :class:`~omnimem_cpp.Stream`); 0: all of them.

    Returns:
        ``(kept, importance)``: kept row indices, ascending, and each row's importance after the running
        average (``[n]``; zeros when the policy does not measure attention).
    """
    mods = np.ascontiguousarray(modality, dtype=np.int8)
    if mods.ndim != 1:
        raise InvalidArgumentError(f"modality must be 1-D [n], got shape {list(mods.shape)}")
    n = mods.size
    params = ffi.new("om_memory_params *")
    fill_params(params, policy=policy, lam=lam, n_sink=n_sink, seed=seed, text_cap=0, n_extra=0,
                redundancy="hidden", score_queries=score_queries, neighbours=neighbours)
    keep_alive = []

    def buffer(array: Optional[np.ndarray], shape_ok, what: str):
        if array is None:
            return ffi.NULL, None
        a = np.ascontiguousarray(array, dtype=np.float32)
        if not shape_ok(a.shape):
            raise InvalidArgumentError(f"{what} has shape {list(a.shape)}")
        keep_alive.append(a)
        return ffi.from_buffer("float[]", a), a

    h_ptr, h = buffer(hidden, lambda s: len(s) == 2 and s[0] == n, "hidden must be [n, d] but")
    k_ptr, k = buffer(keys, lambda s: len(s) == 3 and s[0] == n, "keys must be [n, n_head_kv, head_dim] but")
    q_ptr, q = buffer(queries, lambda s: len(s) == 3 and (k is None or s[2] == k.shape[2]),
                      "queries must be [c, n_head, head_dim] (head_dim as in keys) but")
    if (q is None) != (k is None):
        raise InvalidArgumentError("give queries and keys together")
    n_chunk = q.shape[0] if q is not None else 0
    history_ptr, _ = buffer(history, lambda s: s == (n - n_chunk,), f"history must be [{n - n_chunk}] but")
    if seq is None:
        seq_ptr = ffi.NULL
    else:
        seq = np.ascontiguousarray(seq, dtype=np.int32)
        if seq.shape != (n,):
            raise InvalidArgumentError(f"seq must be [{n}] like modality, got shape {list(seq.shape)}")
        seq_ptr = ffi.from_buffer("int32_t[]", seq)
    if pos is None:
        pos_ptr = ffi.NULL
    else:
        pos = np.ascontiguousarray(pos, dtype=np.int32)
        if pos.shape != (n, 3):
            raise InvalidArgumentError(f"pos must be [{n}, 3] (t, h, w of each row), got shape {list(pos.shape)}")
        pos_ptr = ffi.from_buffer("int32_t[]", pos)
    audio, visual = (int(x) for x in budget)
    kept = np.empty(n, dtype=np.int32)
    importance = np.zeros(n, dtype=np.float32)
    n_kept = ffi.new("int32_t *")
    check(lib.om_memory_select(
        params, n, n_chunk, h_ptr, h.shape[1] if h is not None else 0,
        q_ptr, q.shape[1] if q is not None else 0, k_ptr, k.shape[1] if k is not None else 0,
        k.shape[2] if k is not None else 0, ffi.from_buffer("int8_t[]", mods), history_ptr, seq_ptr, pos_ptr, audio,
        visual,
        ffi.from_buffer("int32_t[]", kept), n_kept, ffi.from_buffer("float[]", importance)))
    return kept[: n_kept[0]].copy(), importance
