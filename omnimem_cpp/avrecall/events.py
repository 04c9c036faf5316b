"""The event model: a seeded schedule of rare visual and sound events, and the scene state they imply.

Visual events change a small scene of named objects, each with a colour and a slot (a screen position):
``appear``, ``disappear``, ``recolour`` (``colour`` is the new colour) and ``move`` (``slot`` is the new
slot). A shape is on screen at most once and a slot holds at most one object, so "the square" and
"the left object" always name one thing. Sound events (``kind="sound"``) play a ``symbol`` for
``duration`` seconds. All events start on whole seconds, events of one modality are at least
``min_event_gap`` apart and no visual event falls within ``cross_modal_gap`` of a sound, so every
question about a moment has exactly one answer. Scene cuts change only the background texture and are
kept apart from the events (no question is asked about them).
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from .config import AVRecallConfig

VISUAL_KINDS = ("appear", "disappear", "recolour", "move")
# how often each visual change is drawn when it is possible; appearances lead so scenes fill up
VISUAL_KIND_WEIGHTS = {"appear": 0.35, "disappear": 0.2, "recolour": 0.25, "move": 0.2}


@dataclass(frozen=True)
class Event:
    """One event. ``time`` and ``duration`` are in seconds; unused fields are None."""

    time: float
    modality: str                    # "visual" or "audio"
    kind: str                        # one of VISUAL_KINDS, or "sound"
    object: Optional[str] = None
    colour: Optional[str] = None
    slot: Optional[str] = None
    symbol: Optional[str] = None
    duration: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# a scene state: shape -> (colour, slot), as a sorted tuple of items so it can key caches
State = tuple


def _schedule(rng: np.random.Generator, rate_per_minute: float, min_gap: float, start: float, stop: float) -> list:
    """Whole-second times of a Poisson-like process whose gaps are never below ``min_gap``."""
    if rate_per_minute <= 0:
        return []
    mean_gap = 60.0 / rate_per_minute
    times, t = [], start
    while True:
        t += min_gap + rng.exponential(max(mean_gap - min_gap, 1e-6))
        whole = float(np.ceil(t))
        if whole >= stop:
            return times
        times.append(whole)
        t = whole


class Timeline:
    """The events of one stream and the scene state at any time.

    Attributes:
        events: visual and sound events in time order.
        scene_cuts: times at which the background changes (the first scene starts at 0).
        introduced: object or symbol -> the time from which it may occur (``config.introduce_over``;
            empty when everything may occur from the start).
    """

    def __init__(self, config: AVRecallConfig):
        self.config = config
        rng = np.random.default_rng([config.seed, 0])
        visual_times = _schedule(rng, config.visual_events_per_minute, config.min_event_gap, 1.0,
                                 config.seconds - 1.0)
        sound_gap = max(config.min_event_gap, config.sound_seconds + 1.0)
        sound_stop = config.seconds - config.sound_seconds
        sound_times = _schedule(rng, config.sound_events_per_minute, sound_gap, 1.0, sound_stop)
        # the scene must hold still while a sound plays, or "what was visible when ..." has two answers: a
        # sound too close to a visual change moves to the next whole second that is clear (dropping it
        # instead would starve dense streams of sounds: at 24 changes a minute almost every second is near one)
        visual_array = np.array(visual_times)

        def clear(t: float) -> bool:
            return not ((visual_array > t - config.cross_modal_gap) &
                        (visual_array < t + config.sound_seconds + config.cross_modal_gap)).any()

        kept = []
        for t in sound_times:
            if kept:
                t = max(t, float(np.ceil(kept[-1] + sound_gap)))
            while t < sound_stop and not clear(t):
                t += 1.0
            if t < sound_stop:
                kept.append(t)
        self.introduced = self._introductions(config)
        building: dict = {}   # the scene as the visual events are drawn, so each change is valid
        events = [self._visual_event(rng, t, building) for t in visual_times]
        events = [e for e in events if e is not None]
        events += [Event(t, "audio", "sound", symbol=str(rng.choice(self._available(config.symbols, t))),
                         duration=config.sound_seconds) for t in kept]
        self.events = sorted(events, key=lambda e: (e.time, e.modality))
        self.scene_cuts = [0.0] + _schedule(rng, 60.0 / config.scene_seconds, config.min_event_gap, 0.0,
                                            config.seconds)
        self._state_times, self._states = self._replay()

    @staticmethod
    def _introductions(config: AVRecallConfig) -> dict:
        """Object or symbol -> the time from which it may occur: the objects in a seeded order at even steps
        over ``introduce_over`` of the stream, the first at 0, and the symbols likewise."""
        if config.introduce_over == 0:
            return {}
        rng = np.random.default_rng([config.seed, 5])     # its own stream: the event draws keep theirs
        span = config.introduce_over * config.seconds
        return {name: span * k / len(names) for names in (config.objects, config.symbols)
                for k, name in enumerate(rng.permutation(names).tolist())}

    def _available(self, names: tuple, t: float) -> list:
        """The ones of ``names`` introduced by time ``t``."""
        return [n for n in names if self.introduced.get(n, 0.0) <= t]

    def _visual_event(self, rng: np.random.Generator, t: float, state: dict) -> Optional[Event]:
        """Draws a change that is possible in ``state`` (shape -> (colour, slot)) and applies it."""
        cfg = self.config
        free_slots = [s for s in cfg.slots if s not in {slot for _, slot in state.values()}]
        absent = [o for o in self._available(cfg.objects, t) if o not in state]
        possible = {
            "appear": bool(free_slots and absent),
            "disappear": bool(state),
            "recolour": bool(state) and len(cfg.colours) > 1,
            "move": bool(state and free_slots),
        }
        kinds = [k for k in VISUAL_KINDS if possible[k]]
        if not kinds:
            return None
        weights = np.array([VISUAL_KIND_WEIGHTS[k] for k in kinds])
        kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
        if kind == "appear":
            obj, colour, slot = str(rng.choice(absent)), str(rng.choice(cfg.colours)), str(rng.choice(free_slots))
            state[obj] = (colour, slot)
            return Event(t, "visual", "appear", object=obj, colour=colour, slot=slot)
        obj = str(rng.choice(sorted(state)))
        colour, slot = state[obj]
        if kind == "disappear":
            del state[obj]
            return Event(t, "visual", "disappear", object=obj, colour=colour, slot=slot)
        if kind == "recolour":
            colour = str(rng.choice([c for c in cfg.colours if c != colour]))
        else:
            slot = str(rng.choice(free_slots))
        state[obj] = (colour, slot)
        return Event(t, "visual", kind, object=obj, colour=colour, slot=slot)

    def _replay(self) -> tuple:
        times, states, state = [0.0], [()], {}
        for e in self.events:
            if e.modality != "visual":
                continue
            if e.kind == "disappear":
                state.pop(e.object)
            else:
                state[e.object] = (e.colour, e.slot)
            times.append(e.time)
            states.append(tuple(sorted(state.items())))
        return times, states

    def state_at(self, t: float) -> dict:
        """The objects on screen at time ``t``: shape -> (colour, slot); a change at ``t`` is included."""
        return dict(self._states[bisect.bisect_right(self._state_times, t + 1e-9) - 1])

    def state_key_at(self, t: float) -> State:
        return self._states[bisect.bisect_right(self._state_times, t + 1e-9) - 1]

    def scene_at(self, t: float) -> int:
        """The index of the background scene shown at time ``t``."""
        return bisect.bisect_right(self.scene_cuts, t + 1e-9) - 1

    def sounds(self, symbol: Optional[str] = None) -> list:
        return [e for e in self.events if e.kind == "sound" and (symbol is None or e.symbol == symbol)]

    def visual_events(self) -> list:
        return [e for e in self.events if e.modality == "visual"]
