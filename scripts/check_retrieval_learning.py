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

`--question count_at_sound`: `--seconds` of the same video-like frames, split into scenes of 6-10 s (the
last up to 11), each with 0 to 3 of the frame's four two-row slots holding a shape (a shape's vector in
both rows; the count drawn evenly); 1 to 3 symbols' sounds, each 25 audio rows of its vector after the frame of a second inside
a scene of its own; asked "How many objects were on screen when the X sound first played?", the
benchmark's question. Finding the sound, its moment's frame and counting the slots in it is what the real
question needs; the commonest count is right 25 % of the time.

    python scripts/check_retrieval_learning.py --lr 5e-4     # a few minutes on 2 cores
    python scripts/check_retrieval_learning.py --lr 2e-3     # the rate the first models were trained with
    python scripts/check_retrieval_learning.py --question appear_order --steps 2000 [--mrope-section 12,2,2]
    python scripts/check_retrieval_learning.py --question count_at_sound --steps 3000

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
SLOT_ROWS = 2                         # a frame's rows per slot (--persist, count_at_sound)
SCENE_SECONDS = (6, 10)               # count_at_sound: shortest and longest scene
MAX_COUNT = 3
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

    def layout(self, rows: np.ndarray, positions: np.ndarray, second: np.ndarray, video, kind: str,
               questions: list) -> dict:
        """``video``: whether the rows are video rows, for all of them or row by row."""
        return {"embeddings": rows.astype(np.float32), "positions": positions.astype(np.int32),
                "chunk": (second // 2).astype(np.int32), "is_video": np.full(len(rows), video), "videos": [],
                "questions": {kind: questions}, "per_kind": len(questions)}

    @staticmethod
    def audio_positions(t: np.ndarray) -> np.ndarray:
        """M-RoPE positions of audio rows at times ``t``: the time on all three axes."""
        return np.repeat(np.asarray(t)[:, None], 3, axis=1)

    @staticmethod
    def frame_positions(seconds: np.ndarray) -> np.ndarray:
        """TMRoPE positions of a video frame's rows, FRAME_ROWS a second: time 25 a second, height and width
        from the stream's start."""
        cell = np.tile(np.arange(FRAME_ROWS), len(seconds))
        t = 1 + np.repeat(seconds, FRAME_ROWS) * recipe.POSITIONS_PER_SECOND
        return np.stack([t, 1 + cell // FRAME_WIDTH, 1 + cell % FRAME_WIDTH], axis=1)


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
        return self.layout(rows, self.audio_positions(t), (t - 1) // recipe.POSITIONS_PER_SECOND,
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
            rows[(second >= at) & (cell // SLOT_ROWS == slot) if self.persist else second == at] = self.vectors[shape]
        positions = self.frame_positions(np.arange(self.seconds))
        if not self.video:
            positions = self.audio_positions(positions[:, 0])
        questions = [(f"Which appeared first, the {a} or the {b}?", a if when[a] < when[b] else b)
                     for a, b in itertools.permutations(shapes, 2)]
        return self.layout(rows, positions, second, self.video, "appear_order", questions)


class SyntheticCounts(SyntheticStream):
    """Scenes of SCENE_SECONDS with 0 to MAX_COUNT of a frame's slots holding a shape, and 1 to 3 sounds, each
    in a scene of its own; asks how many objects were on screen when each sound played."""

    def __init__(self, seconds: int, seed: int):
        self.seconds = seconds
        self.shapes = list(recipe.AVRecallConfig().objects)
        self.symbols = list(recipe.AVRecallConfig().symbols)
        if seconds < SCENE_SECONDS[1]:
            raise ValueError(f"a stream of {seconds} s is shorter than a scene ({SCENE_SECONDS[1]} s at most)")
        super().__init__(seed, tuple(self.shapes + self.symbols))

    def scenes(self, rng: np.random.Generator) -> list:
        """(first second, seconds) of each scene, the last one running to the stream's end (up to
        2 * SCENE_SECONDS[0] - 1 long where what is left cannot be split in two)."""
        starts = [0]
        while (left := self.seconds - starts[-1]) > SCENE_SECONDS[1] and left >= 2 * SCENE_SECONDS[0]:
            longest = min(SCENE_SECONDS[1], left - SCENE_SECONDS[0])
            starts.append(starts[-1] + int(rng.integers(SCENE_SECONDS[0], longest + 1)))
        return [(a, b - a) for a, b in zip(starts, starts[1:] + [self.seconds])]

    def __call__(self, step: int) -> dict:
        rng = np.random.default_rng([self.seed, step])
        width = recipe.TEXT["hidden_size"]
        frames = rng.standard_normal((self.seconds, FRAME_ROWS, width))
        scenes = self.scenes(rng)
        counts = rng.integers(0, MAX_COUNT + 1, size=len(scenes))
        for (start, length), count in zip(scenes, counts):
            slots = rng.choice(FRAME_ROWS // SLOT_ROWS, size=count, replace=False)
            for slot, shape in zip(slots, rng.choice(self.shapes, size=count, replace=False)):
                frames[start:start + length, slot * SLOT_ROWS:(slot + 1) * SLOT_ROWS] = self.vectors[shape]
        heard = rng.choice(self.symbols, size=min(len(scenes), int(rng.integers(1, 4))), replace=False)
        sound_at, questions = {}, []
        for symbol, scene in zip(heard, rng.choice(len(scenes), size=len(heard), replace=False)):
            start, length = scenes[scene]
            sound_at[int(start + rng.integers(1, length))] = symbol     # inside the scene, never at its change
            questions.append((f"How many objects were on screen when the {symbol} sound first played?",
                              str(counts[scene])))
        rows, positions, seconds, video = [], [], [], []
        for s in range(self.seconds):
            rows.append(frames[s])
            positions.append(self.frame_positions(np.array([s])))
            seconds += [s] * FRAME_ROWS
            video += [True] * FRAME_ROWS
            if s in sound_at:       # a second of sound
                rows.append(np.tile(self.vectors[sound_at[s]], (SOUND_ROWS, 1)))
                positions.append(self.audio_positions(1 + s * recipe.POSITIONS_PER_SECOND + np.arange(SOUND_ROWS)))
                seconds += [s] * SOUND_ROWS
                video += [False] * SOUND_ROWS
        return self.layout(np.concatenate(rows), np.concatenate(positions), np.array(seconds), np.array(video),
                           "count_at_sound", questions)


QUESTIONS = {"sound_played": "'Did the X sound play?'", "appear_order": "'Which appeared first, the A or the B?'",
             "count_at_sound": "'How many objects were on screen when the X sound first played?'"}
PRIORS = {"sound_played": "the prior, always 'no': about 67 %", "appear_order": "a favourite shape: 50 %",
          "count_at_sound": "the commonest count: 25 %"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--question", choices=tuple(QUESTIONS), default="sound_played")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=150, help="sound_played: rows per stream (150: six seconds "
                                                               "of audio)")
    parser.add_argument("--seconds", type=int, default=60, help="appear_order, count_at_sound: seconds per stream")
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
    try:
        if args.question == "sound_played":
            streams = SyntheticSounds(args.rows, args.seed)
        elif args.question == "count_at_sound":
            streams = SyntheticCounts(args.seconds, args.seed)
        else:
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
