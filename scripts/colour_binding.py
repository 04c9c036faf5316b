"""Does the AV-Recall model read the named object's colour, or some colour of the stream?

"What colour was the square when it first appeared?" is answered right by naming any colour on screen
whenever the square was the only object around. On the dense short training streams that is most of the
time; on the benchmark's streams it is not. This script tells the two apart: it streams the benchmark's
streams (seeds 0, 1, ...) with the full memory, asks every well-posed colour question (`appear_colour` at the
object's first appearance, `colour_at_sound` at the sound's first play), splits them by how many objects
were on screen at that moment and sorts each answer: right; a colour the named object had at another time
(the object found, the moment missed); another object's colour (the object missed); or a colour the stream
never showed. Beside them: how often naming the colour of an object on screen then, at random, is right.
A model that finds the named object answers as well with two or three objects on screen as with one.
And how often the colour the named object first appeared in is right: a model that finds the object but
not the moment of the sound answers `colour_at_sound` that well.

With --phase it asks no model and only splits the questions of a training phase's streams, to show how
often one object on screen makes any colour on screen the answer.

    python scripts/colour_binding.py [--model M --mmproj P] [--seeds 8] [--minutes 1]
    python scripts/colour_binding.py --phase 1500:12-30@24 --seeds 300
"""

from __future__ import annotations

import collections
import contextlib
import sys
from typing import Optional

from tqdm import tqdm

import omnimem_cpp as om
from omnimem_cpp.avrecall import AVRecallConfig, AVRecallStream, all_questions
from omnimem_cpp.avrecall.bench import FULL, benchmark_config, fed_cells, full_memory_parser
from omnimem_cpp.avrecall.questions import normalise_answer

COLOUR_KINDS = ("appear_colour", "colour_at_sound")
VERDICTS = ("right", "its colour at another time", "another object's colour", "a colour never shown")


def first_appearance(question, timeline):
    """The named object's first appear event."""
    return min((e for e in timeline.visual_events() if e.kind == "appear" and e.object == question.params["object"]),
               key=lambda e: e.time)


def scene_then(question, timeline) -> dict:
    """The scene (object -> (colour, slot)) at the moment a colour question asks about: the object's first
    appearance, or the sound's first play."""
    if question.kind == "appear_colour":
        then = first_appearance(question, timeline).time
    else:
        then = min(e.time for e in timeline.sounds(question.params["symbol"]))
    # half a second on, so that an object appearing then is in it (no other visual change comes that soon)
    return timeline.state_at(then + 0.5)


def chance_of_any_colour(question, scene: dict) -> float:
    """How often naming the colour of an object on screen, picked at random, gives the answer."""
    return sum(colour == question.answer for colour, _ in scene.values()) / len(scene)


def first_colour(question, timeline) -> str:
    """The colour the named object had when it first appeared."""
    return first_appearance(question, timeline).colour


def verdict(question, answer: str, timeline) -> str:
    """Which of VERDICTS an answer to a colour question is."""
    if answer == question.answer:
        return VERDICTS[0]
    shown = {(e.object, e.colour) for e in timeline.visual_events() if e.colour is not None}
    if (question.params["object"], answer) in shown:
        return VERDICTS[1]
    return VERDICTS[2] if any(colour == answer for _, colour in shown) else VERDICTS[3]


def colour_answers(model: Optional[om.Model], config: AVRecallConfig) -> list:
    """(kind, objects on screen then, chance_of_any_colour, whether its first colour is the answer, verdict)
    for every colour question the stream makes well-posed; the verdict is None without a model."""
    av = AVRecallStream(config)
    found = []
    with contextlib.ExitStack() as stack:
        s = stack.enter_context(fed_cells(model, av, (), progress=False))[FULL] if model is not None else None
        for q in all_questions(config, av.timeline):
            if q.kind in COLOUR_KINDS:
                scene = scene_then(q, av.timeline)
                said = (verdict(q, normalise_answer(s.ask(q.text, max_tokens=4)), av.timeline)
                        if s is not None else None)
                found.append((q.kind, len(scene), chance_of_any_colour(q, scene),
                              first_colour(q, av.timeline) == q.answer, said))
    return found


def share(values) -> str:
    return f"{sum(values) / len(values):.0%}"


def main(argv=None) -> int:
    parser = full_memory_parser(__doc__)
    parser.add_argument("--phase", metavar="SPEC",
                        help="ask no model: split the colour questions of this training phase's streams "
                             "(scripts/train_avrecall_model.py --phase, its first --seeds seeds) instead")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.minutes <= 0:
        parser.error("--seeds and --minutes must be positive")
    if args.phase:
        from train_avrecall_model import TRAIN_SEED_BASE, Phase      # needs torch, as training does
        configs = [Phase.parse(args.phase).stream_config(TRAIN_SEED_BASE + i) for i in range(args.seeds)]
        title = f"{args.seeds} streams of the training phase {args.phase}"
    else:
        configs = [benchmark_config(args.minutes, seed, 0) for seed in range(args.seeds)]
        title = f"{args.seeds} streams of {args.minutes:g} min, full memory"
    rows = []
    with contextlib.ExitStack() as stack:
        model = None if args.phase else stack.enter_context(
            om.Model(args.model, mmproj=args.mmproj, n_threads=args.threads))
        for config in tqdm(configs, desc="streams", unit="stream"):
            rows += colour_answers(model, config)
    print(f"{title}, every well-posed colour question\n")
    print("| kind | objects on screen | questions | a random one's colour right | its first colour right | "
          + " | ".join(VERDICTS) + " |\n" + "|---" * (5 + len(VERDICTS)) + "|")
    groups = collections.defaultdict(list)
    for kind, on_screen, chance, first, said in rows:
        groups[(kind, f"{on_screen}+" if on_screen >= 3 else str(on_screen))].append((chance, first, said))
        groups[(kind, "any")].append((chance, first, said))
    for (kind, on_screen), answers in sorted(groups.items()):
        verdicts = [share([said == v for *_, said in answers]) if model is not None else "-" for v in VERDICTS]
        print(f"| {kind} | {on_screen} | {len(answers)} | {share([c for c, _, _ in answers])} | "
              f"{share([f for _, f, _ in answers])} | " + " | ".join(verdicts) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
