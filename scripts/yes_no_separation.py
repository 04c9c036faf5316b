"""Does the AV-Recall model know the answer to a yes/no question even where it answers it wrongly?

Accuracy on "Did the ring appear?" can sit at the answer prior ("no") for two reasons: nothing in the model
tells an object that appeared from one that did not, or something does but never outweighs the prior.
This script tells them apart. It streams the benchmark's streams (seeds 0, 1, ...) with the full memory,
asks every well-posed question of the yes/no kinds, and takes the margin logit("yes") - logit("no") of the
first answer token. It prints, per kind, the AUC of that margin against the truth: the chance that a
question whose answer is "yes" gets a larger margin than one whose answer is "no" (0.5: no signal; 1:
perfectly ordered, whatever the threshold), and how often the larger of the two logits is the truth.

    python scripts/yes_no_separation.py [--model M --mmproj P] [--seeds 8] [--minutes 1]
"""

from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

import omnimem_cpp as om
from omnimem_cpp import chat
from omnimem_cpp.avrecall import AVRecallConfig, AVRecallStream, all_questions
from omnimem_cpp.avrecall.bench import FULL, benchmark_config, fed_cells, full_memory_parser
from omnimem_cpp.avrecall.questions import NO, YES

YES_NO_KINDS = ("sound_played", "object_appeared")


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive's score > a negative's), ties counting half (the Mann-Whitney U over the pairs)."""
    if not len(positive) or not len(negative):
        return float("nan")
    diff = np.subtract.outer(np.asarray(positive, float), np.asarray(negative, float))
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def margins(model: om.Model, config: AVRecallConfig, kinds: tuple) -> list:
    """(kind, margin, answer is yes) for every question of ``kinds`` the stream makes well-posed."""
    yes, no = (model.tokenize(word, special=False)[0] for word in (YES, NO))
    av = AVRecallStream(config)
    found = []
    with fed_cells(model, av, (), progress=False) as streams:
        s = streams[FULL]
        fed = s.n_tokens
        for q in all_questions(config, av.timeline):
            if q.kind in kinds:
                s.feed(chat.user_turn(q.text))
                logits = s.logits()
                found.append((q.kind, float(logits[yes] - logits[no]), q.answer == YES))
                s.rollback(fed)
    return found


def main(argv=None) -> int:
    parser = full_memory_parser(__doc__)
    parser.add_argument("--kinds", default=",".join(YES_NO_KINDS))
    args = parser.parse_args(argv)
    kinds = tuple(args.kinds.split(","))
    if args.seeds < 1 or args.minutes <= 0 or not set(kinds) <= set(YES_NO_KINDS):
        parser.error(f"--seeds and --minutes must be positive, --kinds among {', '.join(YES_NO_KINDS)}")
    rows = []
    with om.Model(args.model, mmproj=args.mmproj, n_threads=args.threads) as model:
        for seed in tqdm(range(args.seeds), desc="streams", unit="stream"):
            rows += margins(model, benchmark_config(args.minutes, seed, 0), kinds)
    print(f"{args.seeds} streams of {args.minutes:g} min, full memory\n")
    print("| kind | questions | answer yes | larger logit right | AUC of logit(yes) - logit(no) |\n|---|---|---|---|---|")
    for kind in kinds:
        margin = np.array([m for k, m, _ in rows if k == kind])
        truth = np.array([t for k, _, t in rows if k == kind], bool)
        print(f"| {kind} | {len(margin)} | {truth.mean():.0%} | {((margin > 0) == truth).mean():.0%} | "
              f"{auc(margin[truth], margin[~truth]):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
