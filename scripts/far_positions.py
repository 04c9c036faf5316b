"""How the AV-Recall model answers when a stream sits far into stream time: the benchmark's streams, fed
with every chunk moved a gap of D minutes later, with the full memory.

Stream-time positions grow by 25 a second. Far into a stream a video row's temporal position has moved on
while its height and width positions stay at its block's start, and the question comes after all of them;
a memory that kept only the last minute of a long stream shows the model exactly this. The benchmark's 5-
and 20-minute cells change two things at once, the number of rows the question reads and their positions.
Here the rows are the same at every gap (one layout per stream, `omnimem_cpp.avrecall.layout`) and only the
positions move, so what changes with the gap is what positions alone do. The model was trained on streams
stretched up to 25 minutes (docs/avrecall.md); gaps past that are beyond anything it saw.

    python scripts/far_positions.py --gaps 0,5,20,60 --seeds 8

Prints the accuracy per gap on all questions and per family. At gap 0 the layout is what the stream itself
feeds, so the answers are those of the benchmark's `full` cell (tests/test_avrecall_model.py checks it).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np
from tqdm import tqdm

import omnimem_cpp as om
from omnimem_cpp.avrecall import MODEL, PROJECTOR, AVRecallStream
from omnimem_cpp.avrecall.bench import StreamResult, ask_questions, stream_configs, summarise
from omnimem_cpp.avrecall.config import QUESTION_FAMILIES
from omnimem_cpp.avrecall.layout import POSITIONS_PER_SECOND, StreamLayout, shift_chunks
from omnimem_cpp.gguf_info import token_embeddings
from omnimem_cpp.memory import MODALITIES

OPENING, CLOSING = "<|vision_bos|><|audio_bos|>", "<|audio_eos|><|vision_eos|>"


class LayoutFeeder:
    """Feeds a stream's layout into new streams of ``model`` at any gap: the opening tokens at position 0,
    the media rows moved ``gap`` positions later, both closing tokens at 1 + the largest position."""

    def __init__(self, model: om.Model, model_path: pathlib.Path):
        self.model = model
        table = token_embeddings(model_path)
        self.opening, self.closing = (table[model.tokenize(t, special=True)] for t in (OPENING, CLOSING))

    def stream(self, layout: dict, gap: int, **options) -> om.Stream:
        """A full-memory stream (``options`` as :class:`Stream` takes them) that has read the layout with its
        chunks ``gap`` positions later."""
        n_chunks = int(layout["chunk"].max()) + 1
        positions = shift_chunks(layout, np.full(n_chunks, gap))
        modality = np.where(layout["is_video"], MODALITIES["visual"], MODALITIES["audio"])
        s = self.model.stream(n_ctx=len(positions) + 256, **options)
        try:
            s.feed_embeddings(self.opening, np.zeros((len(self.opening), 3)))
            s.feed_embeddings(layout["embeddings"], positions, modality)
            s.feed_embeddings(self.closing, np.full((len(self.closing), 3), positions.max() + 1))
        except BaseException:
            s.close()
            raise
        return s


def answers_at_gaps(model_path: pathlib.Path, mmproj: pathlib.Path, configs: list, gaps_minutes: list,
                    threads=None, progress: bool = True) -> list:
    """One :class:`StreamResult` per stream and gap, its policy named ``gap <D> min``."""
    results = []
    with om.Model(model_path, mmproj=mmproj, n_threads=threads) as model:
        feeder = LayoutFeeder(model, model_path)
        for cfg in tqdm(configs, unit="stream", desc="streams", disable=not progress):
            av = AVRecallStream(cfg)
            with model.stream() as encoder:
                layout = StreamLayout(encoder).encode(av)
            for minutes in gaps_minutes:
                with feeder.stream(layout, round(minutes * 60 * POSITIONS_PER_SECOND)) as s:
                    result = StreamResult(f"gap {minutes:g} min", None, cfg.seconds / 60, cfg.seed, s.stats().kv_bytes)
                    result.answers = ask_questions(s, av.questions)
                results.append(result)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gaps", default="0,5,20,60", help="minutes of stream time before the first chunk")
    parser.add_argument("--minutes", type=float, default=1.0, help="length of each benchmark stream")
    parser.add_argument("--seeds", type=int, default=8, help="benchmark streams")
    parser.add_argument("--questions", type=int, default=24, help="asked of each stream, at most")
    parser.add_argument("--model", type=pathlib.Path, default=MODEL)
    parser.add_argument("--mmproj", type=pathlib.Path, default=PROJECTOR)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    gaps = [float(g) for g in args.gaps.split(",")]
    configs = stream_configs(args.minutes, args.seeds, args.questions)
    rows = summarise(answers_at_gaps(args.model, args.mmproj, configs, gaps, args.threads))
    acc = {(r["policy"], r["question_type"]): r for r in rows}
    types = ("all",) + QUESTION_FAMILIES
    n = acc[(f"gap {gaps[0]:g} min", "all")]["n"]
    print(f"{len(configs)} streams of {args.minutes:g} min, {n} questions; accuracy with the full memory\n")
    print("| gap before the stream | " + " | ".join(types) + " |\n|---|" + "---|" * len(types))
    for g in gaps:
        print(f"| {g:g} min | " + " | ".join(f"{acc[(f'gap {g:g} min', t)]['accuracy']:.0%}"
                                            if (f"gap {g:g} min", t) in acc else "–" for t in types) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
