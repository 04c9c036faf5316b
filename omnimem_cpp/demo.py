"""`omnimem demo`: the shipped AV-Recall model watches a generated clip under a memory budget and answers.

It writes a one-minute AV-Recall clip (shapes appearing and changing colour over a still scene, two-tone
sounds over background noise) as an mp4 you can watch, streams the file through the small model that ships
with the package (frames and sound through the native encoders, 2-second chunks) under OmniMem with a
budget of a few hundred tokens per layer and, beside it, into a full memory, then asks both the same
questions and prints their answers beside the truth, with the K/V memory each held. No download.
"""

from __future__ import annotations

import pathlib
import time
from typing import Optional

from tqdm import tqdm

from . import media
from .avrecall import AVRecallConfig, AVRecallStream, normalise_answer, write_mp4
from .avrecall.bench import MODEL as DEMO_MODEL, PROJECTOR as DEMO_PROJECTOR, full_memory_rows
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


def _answers(stream, questions) -> list:
    return [normalise_answer(stream.ask(q.text, max_tokens=4)) for q in questions]


def run_demo(n_threads: Optional[int] = None, clip_path: str = "avrecall-demo.mp4") -> int:
    """Writes the clip to ``clip_path``, streams it into a bounded memory and, beside it, a full one, and
    prints both memories' answers beside the truth: what the budget costs, in memory and in answers."""
    generated = demo_stream()
    path = write_demo_clip(pathlib.Path(clip_path))
    print(f"wrote {path}: {generated.duration:.0f} s of video with sound (watch it with any player)")
    print(f"model: {DEMO_MODEL.name} + {DEMO_PROJECTOR.name}, a small Qwen2.5-Omni thinker trained on AV-Recall "
          f"streams; memory: {DEMO_POLICY}, {DEMO_BUDGET} media rows per layer, and the full memory beside it")
    # both streams see the same chunks in turn, so one cached encoder output per tower serves them both
    with Model(DEMO_MODEL, mmproj=DEMO_PROJECTOR, n_threads=1 if n_threads is None else n_threads,
               encoder_cache=1) as model, \
            model.stream(policy=DEMO_POLICY, budget=DEMO_BUDGET) as bounded, \
            model.stream(n_ctx=full_memory_rows(generated.config)) as full, \
            media.open(path) as reader:
        start = time.perf_counter()
        for chunk in tqdm(reader, total=reader.n_chunks, unit="chunk", desc=f"streaming {path.name}"):
            bounded.feed(chunk)
            full.feed(chunk)
        for stream in (bounded, full):
            stream.close_media()
        ingest_s = time.perf_counter() - start
        kept, everything = bounded.stats(), full.stats()
        rows = sum(kept.rows.values()) // len(kept.layers)
        print(f"{kept.n_tokens} tokens streamed into both memories in {ingest_s:.1f} s; the bounded one holds "
              f"{rows} rows per layer, {_kib(kept.kv_bytes)} of K/V, against {_kib(everything.kv_bytes)} in the "
              "full one")
        questions = generated.questions
        answers = {"bounded": _answers(bounded, questions), "full": _answers(full, questions)}
        width = max(len(q.text) for q in questions)
        columns = {"bounded": f"{DEMO_BUDGET} rows", "full": "full memory"}
        print(f"\n{'question':<{width}}  {'truth':<8}  {columns['bounded']:<14}  {columns['full']}")
        for k, q in enumerate(questions):
            marked = {m: f"{a[k]:<8} {'ok' if a[k] == q.answer else 'wrong'}" for m, a in answers.items()}
            print(f"{q.text:<{width}}  {q.answer:<8}  {marked['bounded']:<14}  {marked['full']}")
        right = {m: sum(a == q.answer for a, q in zip(answers[m], questions)) for m in answers}
        print(f"\n{right['bounded']} of {len(questions)} right with {DEMO_BUDGET} rows per layer, {right['full']} "
              f"with the full memory; the questions were rolled back, the streams still hold {bounded.n_tokens} "
              "tokens")
    return 0
