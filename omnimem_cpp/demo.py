"""`omnimem demo`: the shipped AV-Recall model watches a generated clip under a memory budget and answers.

It writes a one-minute AV-Recall clip (shapes appearing and changing colour over a still scene, two-tone
sounds over background noise) as an mp4 you can watch, streams the file through the small model that ships
with the package (frames and sound through the native encoders, 2-second chunks) under OmniMem with a
budget of a few hundred tokens per layer, then asks questions about it and prints each answer beside the
truth, and what the bounded memory held against what a full one would need. No download.
"""

from __future__ import annotations

import pathlib
import time
from typing import Optional

from tqdm import tqdm

from . import media
from .avrecall import AVRecallConfig, AVRecallStream, normalise_answer, write_mp4
from .avrecall.bench import MODEL as DEMO_MODEL, PROJECTOR as DEMO_PROJECTOR
from .model import Model

DEMO_SEED = 3           # a benchmark seed (the model never saw it) with every question family represented
DEMO_QUESTIONS = 9
DEMO_POLICY, DEMO_BUDGET = "omnimem", 256


def demo_stream(seconds: float = 60.0) -> AVRecallStream:
    return AVRecallStream(AVRecallConfig(seconds=seconds, seed=DEMO_SEED, n_questions=DEMO_QUESTIONS))


def write_demo_clip(path: pathlib.Path, seconds: float = 60.0) -> pathlib.Path:
    """The demo's clip (its first ``seconds``) as an mp4: MPEG-4 video at 2 fps + AAC audio."""
    return write_mp4(AVRecallStream(AVRecallConfig(seconds=seconds, seed=DEMO_SEED, n_questions=0)), path)


def _kib(n: float) -> str:
    return f"{n / 1024:,.0f} KiB"


def run_demo(n_threads: Optional[int] = None, clip_path: str = "avrecall-demo.mp4") -> int:
    """Writes the clip to ``clip_path``, streams it under a budget and prints answers beside the truth."""
    generated = demo_stream()
    path = write_demo_clip(pathlib.Path(clip_path))
    print(f"wrote {path}: {generated.duration:.0f} s of video with sound (watch it with any player)")
    print(f"model: {DEMO_MODEL.name} + {DEMO_PROJECTOR.name}, a small Qwen2.5-Omni thinker trained on AV-Recall "
          f"streams; memory: {DEMO_POLICY}, {DEMO_BUDGET} media rows per layer")
    with Model(DEMO_MODEL, mmproj=DEMO_PROJECTOR, n_threads=1 if n_threads is None else n_threads) as model, \
            model.stream(policy=DEMO_POLICY, budget=DEMO_BUDGET) as stream, media.open(path) as reader:
        start = time.perf_counter()
        for chunk in tqdm(reader, total=reader.n_chunks, unit="chunk", desc=f"streaming {path.name}"):
            stream.feed(chunk)
        stream.close_media()
        ingest_s = time.perf_counter() - start
        stats = stream.stats()
        rows = sum(stats.rows.values())
        full_bytes = stats.kv_bytes / rows * stats.n_tokens * len(stats.layers) if rows else 0
        print(f"{stats.n_tokens} tokens streamed in {ingest_s:.1f} s; memory holds {rows // len(stats.layers)} rows "
              f"per layer: {_kib(stats.kv_bytes)} of K/V, against {_kib(full_bytes)} to keep everything")
        right = 0
        width = max(len(q.text) for q in generated.questions)
        print(f"\n{'question':<{width}}  {'answer':<8} {'truth':<8}")
        for q in generated.questions:
            answer = normalise_answer(stream.ask(q.text, max_tokens=4))
            right += answer == q.answer
            print(f"{q.text:<{width}}  {answer:<8} {q.answer:<8} {'ok' if answer == q.answer else 'wrong'}")
        print(f"\n{right} of {len(generated.questions)} right; the questions were rolled back, the stream still "
              f"holds {stream.n_tokens} tokens")
    return 0
