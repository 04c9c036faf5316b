"""`omnimem demo`: runs the model shipped inside the package end to end, with no download."""

from __future__ import annotations

import pathlib
import time
from typing import Optional

from .model import Model

DEMO_MODEL = pathlib.Path(__file__).resolve().parent / "data" / "demo-text.gguf"

STORY = (
    "Mara kept a small red boat at the north pier. Every morning she rowed past the lighthouse, "
    "counted the gulls on the breakwater and wrote the number in a blue notebook. "
) * 4


def run_demo(n_threads: Optional[int] = None) -> int:
    """Feeds a short text into a stream of the embedded model and asks about it; prints timings."""
    print(f"model: {DEMO_MODEL.name} (tiny, random weights: its answers are noise; it checks that the runtime, "
          "tokenizer and sampler work on this machine)")
    with Model(DEMO_MODEL, n_threads=n_threads) as model, model.stream(n_ctx=1024) as stream:
        print(repr(model))
        start = time.perf_counter()
        stream.feed(STORY)
        prefill_s = time.perf_counter() - start
        print(f"fed {stream.n_tokens} tokens in {prefill_s * 1e3:.1f} ms "
              f"({stream.n_tokens / prefill_s:.0f} tokens/s)")

        question = "What colour is the notebook?"
        print(f"Q: {question}\nA: ", end="", flush=True)
        start = time.perf_counter()
        n_pieces = 0
        for piece in stream.ask(question, max_tokens=24, stream=True):
            print(piece, end="", flush=True)
            n_pieces += 1
        answer_s = time.perf_counter() - start
        print(f"\n{n_pieces} pieces in {answer_s * 1e3:.1f} ms; the stream still holds {stream.n_tokens} tokens "
              "(questions are rolled back)")
    return 0
