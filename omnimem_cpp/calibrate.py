"""Budget tables: the method's modality-aware allocation of a memory budget over layers (omnimem-method §2),
from per-layer signals measured on sample streams.

For each layer l and modality m (audio, visual), E_m(l) is the attention entropy of a chunk's queries over
the modality's keys and D_m(l) = 1 - the mean cosine of adjacent tokens of the modality (layer inputs);
E_all uses audio and visual keys together. Then

    b_m = E_m · sqrt(D_m),   b_all = E_all · sqrt((D_a + D_v) / 2)
    B(l) = n_layer · B̄ · softmax_l(b_all / T)
    audio(l) = B(l) · b_a / (b_a + r · b_v),   visual(l) = B(l) - audio(l)

Example::

    table = om.calibrate.calibrate(model, ["a.mp4", "b.mp4"], budget="8k")
    json.dump(table, open("budget.json", "w"))
    model.stream("omnimem", budget="budget.json")
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from ._native import check, ffi, lib
from .errors import InvalidArgumentError
from .memory import Budget

__all__ = ["allocate", "calibrate", "measure"]

SKIP_CHUNKS = 5        # the reference skips each item's first chunks: a stream's start is not typical
GROUPS = ("audio", "visual", "media")


def measure(model, clips: Sequence[str | os.PathLike], *, skip_chunks: int = SKIP_CHUNKS,
            max_seconds: float = 120.0, progress: bool = True) -> np.ndarray:
    """The signals of every layer, averaged over clips: ``[n_layer, 3, 2]`` with groups audio, visual, both
    and (entropy, redundancy); NaN for a modality no clip has. Each clip streams through a ``full`` stream,
    at most ``max_seconds`` of it, measured from its chunk ``skip_chunks`` on (from the start when shorter)."""
    from tqdm import tqdm

    from . import media

    if not clips:
        raise InvalidArgumentError("calibration needs at least one clip")
    n_layer = model.info.n_layer
    per_clip = []
    for clip in clips:
        with media.open(clip) as reader:
            n_chunks = math.ceil(max_seconds / reader.chunk_seconds)
            if reader.n_chunks is not None:
                n_chunks = min(n_chunks, reader.n_chunks)
            skip = skip_chunks if n_chunks > skip_chunks else 0
            with model.stream(n_ctx=model.info.n_ctx_train) as s:
                bar = tqdm(total=n_chunks, unit="chunk", desc=f"calibrating on {os.fspath(clip)}", disable=not progress)
                for i, chunk in enumerate(reader):
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
                per_clip.append(out.reshape(n_layer, 3, 2))
    with np.errstate(all="ignore"):
        stacked = np.stack(per_clip)
        counts = (~np.isnan(stacked)).sum(axis=0)
        return np.where(counts > 0, np.nansum(stacked, axis=0) / np.maximum(counts, 1), np.nan)


def allocate(signals: np.ndarray, average: int, *, temperature: float = 0.2,
             av_ratio: float = 5.0) -> list[tuple[int, int]]:
    """Per-layer ``(audio, visual)`` budgets from measured ``signals`` (see :func:`measure`) for an average of
    ``average`` media rows per layer."""
    if temperature <= 0 or av_ratio <= 0 or average < 0:
        raise InvalidArgumentError("temperature and av_ratio must be positive and the budget non-negative")
    entropy, redundancy = signals[..., 0], signals[..., 1]
    if np.isnan(entropy[:, 2]).any() or np.isnan(redundancy[:, :2]).all():
        raise InvalidArgumentError("the clips gave no audio or visual tokens to measure; calibrate on media clips")
    # a modality no clip had gets nothing
    b = np.nan_to_num(entropy[:, :2] * np.sqrt(np.clip(redundancy[:, :2], 0, None)), nan=0.0)
    d_mean = np.nanmean(np.clip(redundancy[:, :2], 0, None), axis=1)
    b_all = entropy[:, 2] * np.sqrt(d_mean)
    weights = np.exp((b_all - b_all.max()) / temperature)
    per_layer = len(b_all) * average * weights / weights.sum()
    denominator = b[:, 0] + av_ratio * b[:, 1]
    audio_share = np.divide(b[:, 0], denominator, out=np.full(len(b), 1 / (1 + av_ratio)), where=denominator > 0)
    table = []
    for total, share in zip(per_layer, audio_share):
        total = int(round(total))
        audio = int(round(total * share))
        table.append((audio, total - audio))
    return table


def calibrate(model, clips: Sequence[str | os.PathLike], *, budget: int | str = "8k", temperature: float = 0.2,
              av_ratio: float = 5.0, skip_chunks: int = SKIP_CHUNKS, max_seconds: float = 120.0,
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
        "clips": [os.fspath(c) for c in clips],
        "signals": {g: {"entropy": _floats(signals[:, i, 0]), "redundancy": _floats(signals[:, i, 1])}
                    for i, g in enumerate(GROUPS)},
    }


def _floats(values: np.ndarray) -> list:
    return [None if math.isnan(v) else round(float(v), 6) for v in values]
