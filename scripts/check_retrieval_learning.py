"""Can the AV-Recall training loop teach its model to find something in a stream? A synthetic check.

The model, the loop (train() of train_avrecall_model.py: the stream's K/V once, questions batched over it,
loss on the answer) and the questions are the real ones; only the stream is a stand-in, rows of unit
Gaussian noise with a few things in it, a new stream every step.

`--question sound_played`: `--rows` audio-like rows in which 1 to 3 of the six symbols' "sounds" sit, each
25 identical rows of a fixed random vector of its own (one second at 25 rows/s), asked "Did the X sound
play?". The answer's prior is "no" (about 67 %); a loop that lets the model find the sounds gets close to
100 % within about a thousand steps.

`--question appear_order`: `--seconds` of video-like rows, a frame of 8 rows a second at TMRoPE's positions
(time 25 a second, height and width at the stream's start, as a video block lays them out), in which 2 or 3
of the six shapes each fill the frame of one second, at least 6 s apart; asked "Which appeared first, the A
or the B?" both ways round, so that naming a favourite shape is right half of the time. Nothing in the
rows says which came first: only their positions and the order the causal model reads them in do.
`--persist` keeps each shape on screen from its appearance on, in two rows of every frame of its own, as
the AV-Recall streams' objects stay; `--mrope-section` shares the language model's rotary frequencies out
otherwise (time gets only the highest ones by default); `--rows-like audio` lays the rows out as audio
rows, whose three positions are all the time.

    python scripts/check_retrieval_learning.py --lr 5e-4     # a few minutes on 2 cores
    python scripts/check_retrieval_learning.py --lr 2e-3     # the rate the first models were trained with
    python scripts/check_retrieval_learning.py --question appear_order --steps 2000 [--mrope-section 12,2,2]

It printed, 1,000 steps, accuracy over the last 100 (prior 67 %): lr 5e-4 100 %, lr 2e-3 72 %.
"""

from __future__ import annotations

import argparse
import itertools
import pathlib
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import train_avrecall_model as recipe  # noqa: E402

SOUND_ROWS = 25
FRAME_ROWS, FRAME_WIDTH = 8, 4        # a 2 x 4 frame of video rows a second
MIN_APPEARANCE_GAP = 6                # seconds, the benchmark's gap between events of one modality


class SyntheticStream:
    """A new stand-in stream each step, in the layout train() takes (TrainingStreams' output): subclasses
    place their things in the noise rows and ask about them."""

    train_vision = False

    def __init__(self, seed: int, names: tuple):
        self.seed = seed
        # a key no step's [seed, step] gives: [seed, 0] draws what seed alone draws
        rng = np.random.default_rng([seed, 0, 1])
        self.vectors = {name: rng.standard_normal(recipe.TEXT["hidden_size"]) for name in names}

    def layout(self, rows: np.ndarray, positions: np.ndarray, second: np.ndarray, video: bool, kind: str,
               questions: list) -> dict:
        return {"embeddings": rows.astype(np.float32), "positions": positions.astype(np.int32),
                "chunk": (second // 2).astype(np.int32), "is_video": np.full(len(rows), video), "videos": [],
                "questions": {kind: questions}, "per_kind": len(questions)}


class SyntheticSounds(SyntheticStream):
    """1 to 3 symbols' sounds in ``rows`` audio-like rows; asks whether each symbol's sound played."""

    def __init__(self, rows: int, seed: int):
        self.rows, self.symbols = rows, list(recipe.AVRecallConfig().symbols)
        super().__init__(seed, tuple(self.symbols))

    def __call__(self, step: int) -> dict:
        rng = np.random.default_rng([self.seed, step])
        rows = rng.standard_normal((self.rows, recipe.TEXT["hidden_size"]))
        present = rng.choice(self.symbols, size=rng.integers(1, 4), replace=False)
        slots = rng.choice(self.rows // SOUND_ROWS, size=len(present), replace=False)   # sounds never overlap
        for symbol, slot in zip(present, slots):
            rows[slot * SOUND_ROWS:(slot + 1) * SOUND_ROWS] = self.vectors[symbol]
        t = np.arange(1, self.rows + 1)
        return self.layout(rows, np.repeat(t[:, None], 3, axis=1), (t - 1) // recipe.POSITIONS_PER_SECOND,
                           False, "sound_played", [(f"Did the {s} sound play?", "yes" if s in present else "no")
                                                   for s in self.symbols])


class SyntheticAppearances(SyntheticStream):
    """2 or 3 shapes, each filling the frame of one second of a ``seconds``-long video-like stream (or of
    audio-like rows, ``video`` False), or with ``persist`` each in two rows of its own of every frame from
    that second on; asks which of each two appeared first, both ways round."""

    def __init__(self, seconds: int, seed: int, video: bool = True, persist: bool = False):
        self.seconds, self.video, self.persist = seconds, video, persist
        self.shapes = list(recipe.AVRecallConfig().objects)
        if seconds < 2 * MIN_APPEARANCE_GAP + 1:
            raise ValueError(f"a stream of {seconds} s has no room for three appearances "
                             f"{MIN_APPEARANCE_GAP} s apart")
        super().__init__(seed, tuple(self.shapes))

    def appearance_seconds(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n distinct seconds at least MIN_APPEARANCE_GAP apart, in a random order."""
        spare = self.seconds - 1 - (n - 1) * MIN_APPEARANCE_GAP
        ordered = np.sort(rng.choice(spare + 1, size=n, replace=True)) + np.arange(n) * MIN_APPEARANCE_GAP
        return rng.permutation(ordered)

    def __call__(self, step: int) -> dict:
        rng = np.random.default_rng([self.seed, step])
        second = np.repeat(np.arange(self.seconds), FRAME_ROWS)
        rows = rng.standard_normal((len(second), recipe.TEXT["hidden_size"]))
        shapes = rng.choice(self.shapes, size=rng.integers(2, 4), replace=False)
        when = dict(zip(shapes, self.appearance_seconds(rng, len(shapes))))
        cell = np.tile(np.arange(FRAME_ROWS), self.seconds)
        for slot, (shape, at) in enumerate(when.items()):
            rows[(second >= at) & (cell // 2 == slot) if self.persist else second == at] = self.vectors[shape]
        t = 1 + second * recipe.POSITIONS_PER_SECOND
        positions = (np.stack([t, 1 + cell // FRAME_WIDTH, 1 + cell % FRAME_WIDTH], axis=1) if self.video
                     else np.repeat(t[:, None], 3, axis=1))
        questions = [(f"Which appeared first, the {a} or the {b}?", a if when[a] < when[b] else b)
                     for a, b in itertools.permutations(shapes, 2)]
        return self.layout(rows, positions, second, self.video, "appear_order", questions)


QUESTIONS = {"sound_played": "'Did the X sound play?'", "appear_order": "'Which appeared first, the A or the B?'"}
PRIORS = {"sound_played": "the prior, always 'no': about 67 %", "appear_order": "a favourite shape: 50 %"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--question", choices=tuple(QUESTIONS), default="sound_played")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=150, help="sound_played: rows per stream (150: six seconds "
                                                               "of audio)")
    parser.add_argument("--seconds", type=int, default=60, help="appear_order: seconds per stream")
    parser.add_argument("--rows-like", choices=("video", "audio"), default="video",
                        help="appear_order: lay the rows out as video rows (default) or as audio rows")
    parser.add_argument("--persist", action="store_true",
                        help="appear_order: each shape stays on screen from its appearance on")
    parser.add_argument("--mrope-section", type=recipe.mrope_section, default=recipe.TEXT["mrope_section"],
                        metavar="T,H,W", help="the language model's rotary frequency pairs for time, height and "
                                              "width (default " + ",".join(map(str, recipe.TEXT["mrope_section"]))
                                              + ")")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.question == "sound_played":
        streams = SyntheticSounds(args.rows, args.seed)
    else:
        try:
            streams = SyntheticAppearances(args.seconds, args.seed, video=args.rows_like == "video",
                                           persist=args.persist)
        except ValueError as e:
            parser.error(str(e))
    with tempfile.TemporaryDirectory() as tmp:
        init = recipe.build_checkpoint(pathlib.Path(tmp) / "init", args.seed,
                                       text=dict(recipe.TEXT, mrope_section=args.mrope_section))
        run = pathlib.Path(tmp) / "run"
        shutil.copytree(init, run)
        curve = recipe.train(run, streams, args.steps, args.lr, args.seed, recipe.tqdm.write,
                             checkpoint_every=args.steps + 1)["curve"]
    last = [p["by_kind"][args.question] for p in curve[-2:]]
    print(f"lr {args.lr:g}, {args.steps} steps, M-RoPE section {','.join(map(str, args.mrope_section))}: "
          f"{QUESTIONS[args.question]} accuracy over the last 100 steps {100 * np.mean(last):.0f} % "
          f"({PRIORS[args.question]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
