"""Questions with exact, one-word answers about a timeline.

Three families, in the proportions of ``AVRecallConfig.question_mix``:

* ``audio``: which sound played at a time; how often a sound played in a window; which of two sounds
  played first; which sound came right after a given one.
* ``visual``: which object appeared at a time; an object's colour or slot at a time; how many objects
  were on screen at a time; how many colour changes happened in a window.
* ``cross``: an object's colour, or the number of objects on screen, when a sound played for the n-th
  time; which object appeared last before that sound; whether a sound or an object's appearance came
  first.

Times in the text are ``mm:ss`` (minutes unbounded). Each question carries its ``params`` (the times,
names and windows it is about) so answers can be recomputed from the event list, and ``ask_after``, the
earliest time at which all its evidence has been seen. Answers come from :func:`answer_vocabulary`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .config import QUESTION_FAMILIES, AVRecallConfig
from .events import Timeline

ORDINALS = ("first", "second", "third", "fourth", "fifth")
KINDS = {
    "audio": ("sound_at", "sound_count", "sound_order", "sound_after"),
    "visual": ("appeared_at", "colour_at", "slot_at", "count_visible", "recolour_count"),
    "cross": ("colour_at_sound", "count_at_sound", "appeared_before_sound", "sound_or_object_first"),
}
MAX_TRIES = 200   # draws per question before a family is declared impossible for this stream


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


def format_time(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 60:02d}:{whole % 60:02d}"


def answer_vocabulary(config: AVRecallConfig) -> list:
    """Every answer a question can have: numbers 0..max_count, the objects, colours, slots and symbols."""
    words = [str(n) for n in range(config.max_count + 1)]
    for group in (config.objects, config.colours, config.slots, config.symbols):
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


class _Builder:
    """Draws one question of a kind, or None when the draw does not give a well-posed question."""

    def __init__(self, config: AVRecallConfig, timeline: Timeline, rng: np.random.Generator):
        self.cfg, self.tl, self.rng = config, timeline, rng
        self.sounds = timeline.sounds()
        self.visual = timeline.visual_events()
        self.visual_times = np.array([e.time for e in self.visual])

    def pick(self, items):
        return items[self.rng.integers(len(items))] if len(items) else None

    def stable_time(self, lo: float, hi: float):
        """A whole second in [lo, hi) at least 1 s away from any visual change, so a frame-exact moment is
        not needed to answer."""
        if hi - lo < 1:
            return None
        t = float(self.rng.integers(int(np.ceil(lo)), int(np.floor(hi - 1e-9)) + 1))
        if t >= self.cfg.seconds or (np.abs(self.visual_times - t) < 1.0 + 1e-9).any():
            return None
        return t

    def window(self, events):
        """A [start, end) window of whole seconds, not starting or ending on an event."""
        length = float(self.rng.integers(30, max(31, int(self.cfg.seconds // 2))))
        start = float(self.rng.integers(0, max(1, int(self.cfg.seconds - length))))
        end = min(start + length, float(int(self.cfg.seconds)))
        if any(e.time in (start, end) for e in events) or end <= start:
            return None
        return start, end

    def nth_sound(self):
        """A sound with its symbol and ordinal among that symbol's sounds (first..fifth)."""
        e = self.pick(self.sounds)
        if e is None:
            return None
        n = [s.time for s in self.tl.sounds(e.symbol)].index(e.time)
        return (e, n) if n < len(ORDINALS) else None

    # --- audio ---

    def sound_at(self):
        e = self.pick(self.sounds)
        if e is None:
            return None
        return (f"Which sound played at {format_time(e.time)}?", e.symbol, e.time + e.duration, {"time": e.time})

    def sound_count(self):
        symbol = self.pick(self.cfg.symbols)
        w = self.window(self.sounds)
        if w is None:
            return None
        n = sum(1 for e in self.tl.sounds(symbol) if w[0] <= e.time < w[1])
        if n > self.cfg.max_count:
            return None
        return (f"How many times did the {symbol} sound play between {format_time(w[0])} and {format_time(w[1])}?",
                str(n), w[1], {"symbol": symbol, "start": w[0], "end": w[1]})

    def sound_order(self):
        firsts = {}
        for e in self.sounds:
            firsts.setdefault(e.symbol, e.time)
        if len(firsts) < 2:
            return None
        a, b = (str(s) for s in self.rng.choice(sorted(firsts), 2, replace=False))
        answer = a if firsts[a] < firsts[b] else b
        return (f"Which sound played first, {a} or {b}?", answer, max(firsts[a], firsts[b]),
                {"symbols": [a, b]})

    def sound_after(self):
        picked = self.nth_sound()
        if picked is None:
            return None
        e, n = picked
        later = [s for s in self.sounds if s.time > e.time]
        if not later:
            return None
        return (f"Which sound played right after the {ORDINALS[n]} {e.symbol} sound?", later[0].symbol,
                later[0].time + later[0].duration, {"symbol": e.symbol, "occurrence": n + 1})

    # --- visual ---

    def appeared_at(self):
        e = self.pick([v for v in self.visual if v.kind == "appear"])
        if e is None:
            return None
        return (f"Which object appeared at {format_time(e.time)}?", e.object, e.time, {"time": e.time})

    def _object_at(self):
        t = self.stable_time(0, self.cfg.seconds)
        if t is None:
            return None
        state = self.tl.state_at(t)
        if not state:
            return None
        obj = self.pick(sorted(state))
        return t, obj, state[obj]

    def colour_at(self):
        got = self._object_at()
        if got is None:
            return None
        t, obj, (colour, _) = got
        return (f"What colour was the {obj} at {format_time(t)}?", colour, t, {"object": obj, "time": t})

    def slot_at(self):
        got = self._object_at()
        if got is None:
            return None
        t, obj, (_, slot) = got
        return (f"Where was the {obj} at {format_time(t)}?", slot, t, {"object": obj, "time": t})

    def count_visible(self):
        t = self.stable_time(0, self.cfg.seconds)
        if t is None:
            return None
        return (f"How many objects were on screen at {format_time(t)}?", str(len(self.tl.state_at(t))), t,
                {"time": t})

    def recolour_count(self):
        w = self.window(self.visual)
        if w is None:
            return None
        n = sum(1 for e in self.visual if e.kind == "recolour" and w[0] <= e.time < w[1])
        if n > self.cfg.max_count:
            return None
        return (f"How many times did an object change colour between {format_time(w[0])} and "
                f"{format_time(w[1])}?", str(n), w[1], {"start": w[0], "end": w[1]})

    # --- cross-modal ---

    def _at_sound(self):
        picked = self.nth_sound()
        if picked is None:
            return None
        e, n = picked
        return e, n, f"the {ORDINALS[n]} time the {e.symbol} sound played", {"symbol": e.symbol,
                                                                               "occurrence": n + 1}

    def colour_at_sound(self):
        got = self._at_sound()
        if got is None:
            return None
        e, _, phrase, params = got
        state = self.tl.state_at(e.time)
        if not state:
            return None
        obj = self.pick(sorted(state))
        return (f"What colour was the {obj} {phrase}?", state[obj][0], e.time + e.duration,
                {**params, "object": obj})

    def count_at_sound(self):
        got = self._at_sound()
        if got is None:
            return None
        e, _, phrase, params = got
        return (f"How many objects were on screen {phrase}?", str(len(self.tl.state_at(e.time))),
                e.time + e.duration, params)

    def appeared_before_sound(self):
        got = self._at_sound()
        if got is None:
            return None
        e, _, phrase, params = got
        before = [v for v in self.visual if v.kind == "appear" and v.time < e.time]
        if not before:
            return None
        return (f"Which object appeared last before {phrase}?", before[-1].object, e.time + e.duration, params)

    def sound_or_object_first(self):
        firsts = {}
        for e in self.sounds:
            firsts.setdefault(e.symbol, e.time)
        appears = {}
        for v in self.visual:
            if v.kind == "appear":
                appears.setdefault(v.object, v.time)
        if not firsts or not appears:
            return None
        symbol, obj = self.pick(sorted(firsts)), self.pick(sorted(appears))
        answer = symbol if firsts[symbol] < appears[obj] else obj
        return (f"Which came first, the {symbol} sound or the {obj} appearing?", answer,
                max(firsts[symbol], appears[obj]), {"symbol": symbol, "object": obj})


def generate_questions(config: AVRecallConfig, timeline: Timeline) -> list:
    """``config.n_questions`` distinct questions in the config's family mix, in a seeded order."""
    rng = np.random.default_rng([config.seed, 4])
    builder = _Builder(config, timeline, rng)
    questions, seen = [], set()
    for family, count in family_counts(config).items():
        for _ in range(count):
            for _ in range(MAX_TRIES):
                kind = KINDS[family][rng.integers(len(KINDS[family]))]
                drawn = getattr(builder, kind)()
                if drawn is not None and drawn[0] not in seen:
                    break
            else:
                raise ValueError(f"cannot draw {count} distinct {family} questions from this stream; make it "
                                 "longer, raise the event rates or ask fewer questions")
            text, answer, ask_after, params = drawn
            seen.add(text)
            questions.append(Question(family, kind, text, answer, float(ask_after), params))
    order = rng.permutation(len(questions))
    return [questions[i] for i in order]
