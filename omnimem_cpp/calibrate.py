"""Budget tables: the method's modality-aware allocation of a memory budget over layers (omnimem-method §2),
from per-layer signals measured on sample streams.

For each layer l and modality m (audio, visual), E_m(l) is the attention entropy of a chunk's queries over
the modality's keys and D_m(l) = 1 - the mean cosine of adjacent tokens of the modality (layer inputs);
E_all uses audio and visual keys together. Then

    b_m = E_m · sqrt(D_m),   b_all = E_all · sqrt((D_a + D_v) / 2)
    B(l) = clip(c · softmax_l(b_all / T), B̄ / 2, 3 B̄ / 2),  c such that the B(l) sum to n_layer · B̄
    audio(l) = B(l) · b_a / (b_a + r · b_v),   visual(l) = B(l) - audio(l)

The bounds are the reference allocation's: no layer gets less than half the average or more than 1.5 times
it. Without them a model whose layers measure far apart (a small one: b_all differing by 1 over T = 0.2 is a
factor e⁵) gives the whole budget to one layer and leaves the others no media at all. The reference clips
each modality and lets the sum fall short of the budget; here what the bounds take from one layer goes to
the others, so the table always holds the budget asked for.

Example::

    table = om.calibrate.calibrate(model, ["a.mp4", "b.mp4"], budget="8k")
    json.dump(table, open("budget.json", "w"))
    model.stream("omnimem", budget="budget.json")
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence

import numpy as np

from ._native import check, ffi, lib
from .errors import InvalidArgumentError
from .memory import AV_RATIO, Budget

__all__ = ["allocate", "calibrate", "measure"]

LAYER_BOUNDS = (0.5, 1.5)   # a layer's budget against the average, as the reference allocation clips it
SKIP_CHUNKS = 5        # the reference skips each item's first chunks: a stream's start is not typical
GROUPS = ("audio", "visual", "media")


def measure(model, clips: Sequence, *, skip_chunks: int = SKIP_CHUNKS, max_seconds: float = 120.0,
            progress: bool = True) -> np.ndarray:
    """The signals of every layer, averaged over clips: ``[n_layer, 3, 2]`` with groups audio, visual, both
    and (entropy, redundancy); NaN for a modality no clip has. Each clip streams through a ``full`` stream,
    at most ``max_seconds`` of it, measured from its chunk ``skip_chunks`` on (from the start when shorter).

    A clip is a media file or URL, or a source already open: anything with ``chunk_seconds`` and ``n_chunks``
    (None when unknown) that iterates over chunks, as :func:`omnimem_cpp.media.open`'s reader and
    :class:`omnimem_cpp.avrecall.AVRecallStream` do."""
    from . import media

    if not clips:
        raise InvalidArgumentError("calibration needs at least one clip")
    per_clip = []
    for clip in clips:
        opened = media.open(clip) if isinstance(clip, (str, os.PathLike)) else contextlib.nullcontext(clip)
        with opened as source:
            per_clip.append(_measure_source(model, source, _clip_name(clip), skip_chunks, max_seconds, progress))
    with np.errstate(all="ignore"):
        stacked = np.stack(per_clip)
        counts = (~np.isnan(stacked)).sum(axis=0)
        return np.where(counts > 0, np.nansum(stacked, axis=0) / np.maximum(counts, 1), np.nan)


def _measure_source(model, source, name: str, skip_chunks: int, max_seconds: float, progress: bool) -> np.ndarray:
    """One clip's signals, ``[n_layer, 3, 2]`` (see :func:`measure`)."""
    from tqdm import tqdm

    n_chunks = math.ceil(max_seconds / source.chunk_seconds)
    if source.n_chunks is not None:
        n_chunks = min(n_chunks, source.n_chunks)
    skip = skip_chunks if n_chunks > skip_chunks else 0
    n_layer = model.info.n_layer
    with model.stream(n_ctx=model.info.n_ctx_train) as s:
        bar = tqdm(total=n_chunks, unit="chunk", desc=f"calibrating on {name}", disable=not progress)
        for i, chunk in enumerate(source):
            if i == n_chunks:
                break
            if i == skip:
                check(lib.om_stream_calibrate(s.handle, True))
            s.feed(chunk)
            bar.update()
        bar.close()
        s.close_media()
        out = np.empty(n_layer * 6, dtype=np.float32)
        check(lib.om_stream_get_calibration(s.handle, ffi.from_buffer("float[]", out), out.size))
    return out.reshape(n_layer, 3, 2)


def allocate(signals: np.ndarray, average: int, *, temperature: float = 0.2, av_ratio: float = AV_RATIO,
             bounds: tuple[float, float] = LAYER_BOUNDS) -> list[tuple[int, int]]:
    """Per-layer ``(audio, visual)`` budgets from measured ``signals`` (see :func:`measure`) for an average of
    ``average`` media rows per layer, each layer's total between ``bounds`` times the average."""
    low, high = bounds
    if temperature <= 0 or av_ratio <= 0 or average < 0:
        raise InvalidArgumentError("temperature and av_ratio must be positive and the budget non-negative")
    if not 0 <= low <= 1 <= high:
        raise InvalidArgumentError(f"layer bounds must hold the average (low <= 1 <= high), got {bounds}")
    entropy, redundancy = signals[..., 0], signals[..., 1]
    if np.isnan(entropy[:, 2]).any() or np.isnan(redundancy[:, :2]).all():
        raise InvalidArgumentError("the clips gave no audio or visual tokens to measure; calibrate on media clips")
    # a modality no clip had gets nothing
    b = np.nan_to_num(entropy[:, :2] * np.sqrt(np.clip(redundancy[:, :2], 0, None)), nan=0.0)
    d_mean = np.nanmean(np.clip(redundancy[:, :2], 0, None), axis=1)
    b_all = entropy[:, 2] * np.sqrt(d_mean)
    per_layer = _bounded_shares(b_all / temperature, low, high) * average
    denominator = b[:, 0] + av_ratio * b[:, 1]
    audio_share = np.divide(b[:, 0], denominator, out=np.full(len(b), 1 / (1 + av_ratio)), where=denominator > 0)
    table = []
    for total, share in zip(per_layer, audio_share):
        total = int(round(total))
        audio = int(round(total * share))
        table.append((audio, total - audio))
    return table


def _bounded_shares(logits: np.ndarray, low: float, high: float) -> np.ndarray:
    """Each layer's budget in units of the average: clip(c · softmax(logits), low, high), with c chosen so that
    they sum to the number of layers. The sum grows with c, so bisection on log c finds it; in logs, a layer
    whose softmax weight underflows can still be raised to ``low``."""
    n = len(logits)
    z = logits - logits.max()

    def shares(log_c: float) -> np.ndarray:
        with np.errstate(over="ignore"):        # a value past ``high`` is clipped to it anyway
            return np.clip(np.exp(log_c + z), low, high)

    # at log(1/n) the unclipped values sum to at most 1; at the top each is at least min(high, n), and no
    # layer needs more than n (all of the budget)
    lo_c, hi_c = math.log(1 / n), math.log(min(high, n)) - z.min()
    for _ in range(200):
        mid = (lo_c + hi_c) / 2
        lo_c, hi_c = (mid, hi_c) if shares(mid).sum() < n else (lo_c, mid)
    return shares(hi_c)


def calibrate(model, clips: Sequence, *, budget: int | str = "8k", temperature: float = 0.2,
              av_ratio: float = AV_RATIO, skip_chunks: int = SKIP_CHUNKS, max_seconds: float = 120.0,
              progress: bool = True) -> dict:
    """Measures the signals on ``clips`` and returns the budget table as the JSON-ready dict that
    ``budget=`` accepts (a path to it, or the dict)."""
    spec = Budget.parse(budget)
    if spec.tokens is None:
        raise InvalidArgumentError("calibrate takes a budget in tokens per layer (e.g. 8k); give bytes when "
                                   "streaming: the table's shape is kept at that scale")
    signals = measure(model, clips, skip_chunks=skip_chunks, max_seconds=max_seconds, progress=progress)
    table = allocate(signals, spec.tokens, temperature=temperature, av_ratio=av_ratio)
    return {
        "layers": [list(pair) for pair in table],
        "average": spec.tokens,
        "temperature": temperature,
        "av_ratio": av_ratio,
        "layer_bounds": list(LAYER_BOUNDS),
        "clips": [_clip_name(c) for c in clips],
        "signals": {g: {"entropy": _floats(signals[:, i, 0]), "redundancy": _floats(signals[:, i, 1])}
                    for i, g in enumerate(GROUPS)},
    }


def _clip_name(clip) -> str:
    return os.fspath(clip) if isinstance(clip, (str, os.PathLike)) else repr(clip)


def _floats(values: np.ndarray) -> list:
    return [None if math.isnan(v) else round(float(v), 6) for v in values]
