"""Questions with exact, one-word answers about a timeline, addressed by content rather than by clock time.

Three families, in the proportions of ``AVRecallConfig.question_mix``:

* ``audio``: whether a sound played; how many times it played; which of two sounds played first.
* ``visual``: whether an object appeared; its colour when it first appeared; which of two objects
  appeared first.
* ``cross``: an object's colour, or the number of objects on screen, when a sound first played; whether
  a sound or an object's appearance came first.

Moments are named by what happened then ("when the bravo sound first played"), not by a clock time:
reading ``mm:ss`` and mapping it to a stream position is a skill of its own, unrelated to what a memory
keeps, and beyond a model small enough to train here. Each question carries its ``params`` (the names it
is about) so answers can be recomputed from the event list, and ``ask_after``, the earliest time at which
all its evidence has been seen. Answers come from :func:`answer_vocabulary`.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

import numpy as np

from .config import QUESTION_FAMILIES, AVRecallConfig
from .events import Timeline

KINDS = {
    "audio": ("sound_played", "sound_count", "sound_order"),
    "visual": ("object_appeared", "appear_colour", "appear_order"),
    "cross": ("colour_at_sound", "count_at_sound", "sound_or_object_first"),
}
YES, NO = "yes", "no"


@dataclass(frozen=True)
class Question:
    family: str                      # "audio", "visual" or "cross"
    kind: str                        # one of KINDS[family]
    text: str
    answer: str
    ask_after: float                 # seconds: all the evidence is in the stream by then
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def normalise_answer(text: str) -> str:
    """The answer word in a model's reply: its first word, lower-cased, without punctuation around it."""
    words = text.strip().lower().split()
    return words[0].strip(".,;:!?\"'()") if words else ""


def answer_vocabulary(config: AVRecallConfig) -> list:
    """Every answer a question can have: numbers 0..max_count, yes and no, the objects, colours and symbols."""
    words = [str(n) for n in range(config.max_count + 1)] + [YES, NO]
    for group in (config.objects, config.colours, config.symbols):
        words += [w for w in group if w not in words]
    return words


def family_counts(config: AVRecallConfig) -> dict:
    """Questions per family: the mix's shares of n_questions, rounded by largest remainder."""
    total = sum(config.question_mix.get(f, 0.0) for f in QUESTION_FAMILIES)
    exact = {f: config.question_mix.get(f, 0.0) / total * config.n_questions for f in QUESTION_FAMILIES}
    counts = {f: int(np.floor(v)) for f, v in exact.items()}
    by_remainder = sorted(QUESTION_FAMILIES, key=lambda f: (counts[f] - exact[f], QUESTION_FAMILIES.index(f)))
    for f in by_remainder[:config.n_questions - sum(counts.values())]:
        counts[f] += 1
    return counts


class _Candidates:
    """Every well-posed question of each kind about one timeline, as (text, answer, ask_after, params)."""

    def __init__(self, config: AVRecallConfig, timeline: Timeline):
        self.cfg, self.tl = config, timeline
        self.first_sound = {}            # symbol -> its first sound event
        for e in timeline.sounds():
            self.first_sound.setdefault(e.symbol, e)
        self.first_appear = {}           # object -> its first appearance
        for v in timeline.visual_events():
            if v.kind == "appear":
                self.first_appear.setdefault(v.object, v)

    def _end(self, e) -> float:
        return e.time + e.duration

    # --- audio ---

    def sound_played(self):
        for s in self.cfg.symbols:
            e = self.first_sound.get(s)
            yield (f"Did the {s} sound play?", YES if e else NO, self._end(e) if e else self.cfg.seconds,
                   {"symbol": s})

    def sound_count(self):
        for s in self.cfg.symbols:
            n = len(self.tl.sounds(s))
            if n <= self.cfg.max_count:
                yield f"How many times did the {s} sound play?", str(n), self.cfg.seconds, {"symbol": s}

    def sound_order(self):
        for a, b in itertools.permutations(sorted(self.first_sound), 2):
            ea, eb = self.first_sound[a], self.first_sound[b]
            yield (f"Which sound played first, {a} or {b}?", a if ea.time < eb.time else b,
                   self._end(max(ea, eb, key=lambda e: e.time)), {"symbols": [a, b]})

    # --- visual ---

    def object_appeared(self):
        for o in self.cfg.objects:
            e = self.first_appear.get(o)
            yield f"Did the {o} appear?", YES if e else NO, e.time if e else self.cfg.seconds, {"object": o}

    def appear_colour(self):
        for o, e in sorted(self.first_appear.items()):
            yield f"What colour was the {o} when it first appeared?", e.colour, e.time, {"object": o}

    def appear_order(self):
        for a, b in itertools.permutations(sorted(self.first_appear), 2):
            ea, eb = self.first_appear[a], self.first_appear[b]
            yield (f"Which appeared first, the {a} or the {b}?", a if ea.time < eb.time else b,
                   max(ea.time, eb.time), {"objects": [a, b]})

    # --- cross-modal ---

    def colour_at_sound(self):
        for s, e in sorted(self.first_sound.items()):
            for o, (colour, _) in sorted(self.tl.state_at(e.time).items()):
                yield (f"What colour was the {o} when the {s} sound first played?", colour, self._end(e),
                       {"symbol": s, "object": o})

    def count_at_sound(self):
        for s, e in sorted(self.first_sound.items()):
            yield (f"How many objects were on screen when the {s} sound first played?",
                   str(len(self.tl.state_at(e.time))), self._end(e), {"symbol": s})

    def sound_or_object_first(self):
        for (s, es), (o, eo) in itertools.product(sorted(self.first_sound.items()),
                                                   sorted(self.first_appear.items())):
            yield (f"Which came first, the {s} sound or the {o}?", s if es.time < eo.time else o,
                   max(self._end(es), eo.time), {"symbol": s, "object": o})


def all_questions(config: AVRecallConfig, timeline: Timeline) -> list:
    """Every well-posed question about the timeline, kind by kind (what a training set draws from)."""
    candidates = _Candidates(config, timeline)
    return [Question(family, kind, *drawn)
            for family in QUESTION_FAMILIES for kind in KINDS[family]
            for drawn in getattr(candidates, kind)()]


def generate_questions(config: AVRecallConfig, timeline: Timeline) -> list:
    """``config.n_questions`` distinct questions in the config's family mix, in a seeded order: each draw
    picks a kind of the family at random among those with questions left, then one of its questions."""
    rng = np.random.default_rng([config.seed, 4])
    pool = {}
    for q in all_questions(config, timeline):
        pool.setdefault(q.family, {}).setdefault(q.kind, []).append(q)
    questions = []
    for family, count in family_counts(config).items():
        kinds = pool.get(family, {})
        for _ in range(count):
            open_kinds = [k for k in KINDS[family] if kinds.get(k)]
            if not open_kinds:
                raise ValueError(f"cannot draw {count} distinct {family} questions from this stream; make it "
                                 "longer, raise the event rates or ask fewer questions")
            left = kinds[open_kinds[rng.integers(len(open_kinds))]]
            questions.append(left.pop(rng.integers(len(left))))
    order = rng.permutation(len(questions))
    return [questions[i] for i in order]
