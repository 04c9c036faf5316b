"""Does the AV-Recall model read the named object's colour, or just a colour on screen?

"What colour was the square when it first appeared?" is answered right by reading any object's colour
whenever the square was the only object around. On the dense short training streams that is most of the
time, on the benchmark's streams it is not. This script tells the two apart: it streams the benchmark's
streams (seeds 0, 1, ...) with the full memory, asks every well-posed colour question (`appear_colour` at the
object's first appearance, `colour_at_sound` at the sound), and splits the answers by how many objects were
on screen at that moment. A model that finds the named object answers as well with two or three objects on
screen as with one; one that reads a colour on screen falls to about one in two, one in three, and its
wrong answers are the other objects' colours.

    python scripts/colour_binding.py [--model M --mmproj P] [--seeds 8] [--minutes 1]
"""

from __future__ import annotations

import argparse
import collections
import sys

from tqdm import tqdm

import omnimem_cpp as om
from omnimem_cpp.avrecall import MODEL, PROJECTOR, AVRecallConfig, AVRecallStream, all_questions
from omnimem_cpp.avrecall.bench import FULL, benchmark_config, fed_cells
from omnimem_cpp.avrecall.questions import normalise_answer

COLOUR_KINDS = ("appear_colour", "colour_at_sound")


def scene_then(question, timeline) -> dict:
    """The scene (object -> (colour, slot)) at the moment a colour question asks about: the object's first
    appearance, or the sound's first play."""
    if question.kind == "appear_colour":
        then = min(e.time for e in timeline.visual_events()
                   if e.kind == "appear" and e.object == question.params["object"])
    else:
        then = min(e.time for e in timeline.sounds(question.params["symbol"]))
    # half a second on, so that an object appearing then is in it (no other visual change comes that soon)
    return timeline.state_at(then + 0.5)


def colour_answers(model: om.Model, config: AVRecallConfig) -> list:
    """(kind, objects on screen then, answer is right, answer is another object's colour then) for every
    colour question the stream makes well-posed."""
    av = AVRecallStream(config)
    found = []
    with fed_cells(model, av, (), progress=False) as streams:
        s = streams[FULL]
        for q in all_questions(config, av.timeline):
            if q.kind not in COLOUR_KINDS:
                continue
            scene = scene_then(q, av.timeline)
            others = {colour for obj, (colour, _) in scene.items() if obj != q.params["object"]}
            answer = normalise_answer(s.ask(q.text, max_tokens=4))
            found.append((q.kind, len(scene), answer == q.answer, answer != q.answer and answer in others))
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--mmproj", default=str(PROJECTOR))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.minutes <= 0:
        parser.error("--seeds and --minutes must be positive")
    rows = []
    with om.Model(args.model, mmproj=args.mmproj, n_threads=args.threads) as model:
        for seed in tqdm(range(args.seeds), desc="streams", unit="stream"):
            rows += colour_answers(model, benchmark_config(args.minutes, seed, 0))
    print(f"{args.seeds} streams of {args.minutes:g} min, full memory, every well-posed colour question\n")
    print("| kind | objects on screen | questions | right | wrong: another object's colour |\n|---|---|---|---|---|")
    groups = collections.defaultdict(list)
    for kind, on_screen, right, other in rows:
        groups[(kind, min(on_screen, 3))].append((right, other))
    for (kind, on_screen), answers in sorted(groups.items()):
        n = len(answers)
        print(f"| {kind} | {on_screen}{'+' if on_screen == 3 else ''} | {n} | {sum(r for r, _ in answers) / n:.0%} | "
              f"{sum(o for _, o in answers) / n:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
