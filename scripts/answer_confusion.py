"""Which answers does the AV-Recall model give to one kind of question, against the true ones?

The benchmark asks a few questions of each kind per stream, too few to tell a model that reads the answer
from the stream from one that names the kind's commonest answer. This script streams the benchmark's
streams (seeds 0, 1, ...) with the full memory, asks every well-posed question of the kinds given and prints,
for each kind, a table of the true answers against the model's, with the share each true answer has among
the questions: a model that names one answer whatever it hears fills a single column.

    python scripts/answer_confusion.py [--kinds count_at_sound,...] [--model M --mmproj P] [--seeds 40] [--minutes 1]
"""

from __future__ import annotations

import collections
import sys

from tqdm import tqdm

import omnimem_cpp as om
from omnimem_cpp.avrecall import AVRecallStream, all_questions
from omnimem_cpp.avrecall.bench import FULL, benchmark_config, fed_cells, full_memory_parser
from omnimem_cpp.avrecall.questions import KINDS, normalise_answer

OTHER = "other"         # the column of answers no question of the kind has


def kind_answers(model: om.Model, seed: int, minutes: float, kinds: tuple) -> list:
    """(kind, truth, answer) for every well-posed question of ``kinds`` about one benchmark stream."""
    av = AVRecallStream(benchmark_config(minutes, seed, 0))
    with fed_cells(model, av, (), progress=False) as cells:
        return [(q.kind, q.answer, normalise_answer(cells[FULL].ask(q.text, max_tokens=4)))
                for q in all_questions(av.config, av.timeline) if q.kind in kinds]


def confusion_table(kind: str, pairs: list) -> str:
    """Markdown: a row per true answer (its count and share), a column per answer given, and the accuracy."""
    truths = sorted({t for t, _ in pairs})
    columns = truths + ([OTHER] if any(a not in truths for _, a in pairs) else [])
    cells = collections.Counter((t, a if a in truths else OTHER) for t, a in pairs)
    right = sum(t == a for t, a in pairs)
    lines = [f"`{kind}`: {len(pairs)} questions, {right / len(pairs):.0%} right\n",
             "| truth | questions | " + " | ".join(f"said {c}" for c in columns) + " |",
             "|---" * (2 + len(columns)) + "|"]
    for t in truths:
        n = sum(cells[(t, c)] for c in columns)
        lines.append(f"| {t} | {n} ({n / len(pairs):.0%}) | " + " | ".join(str(cells[(t, c)]) for c in columns)
                     + " |")
    return "\n".join(lines)


def summary_table(rows: list) -> str:
    """Markdown: each kind's questions and share right, then the mean of the kinds' shares (each kind
    weighs alike, as the benchmark's even draw of kinds does) and the share of all questions."""
    by_kind = collections.defaultdict(list)
    for kind, truth, answer in rows:
        by_kind[kind].append(truth == answer)
    shares = {kind: sum(hits) / len(hits) for kind, hits in by_kind.items()}
    lines = ["| kind | questions | right |", "|---|---|---|"]
    lines += [f"| `{kind}` | {len(by_kind[kind])} | {shares[kind]:.0%} |" for kind in by_kind]
    lines.append(f"| mean of the kinds | | {sum(shares.values()) / len(shares):.0%} |")
    lines.append(f"| every question | {len(rows)} | {sum(t == a for _, t, a in rows) / len(rows):.0%} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = full_memory_parser(__doc__)
    known = [k for family in KINDS.values() for k in family]
    parser.add_argument("--kinds", default="all",
                        help=f"comma-separated question kinds (of {', '.join(known)}; default all)")
    args = parser.parse_args(argv)
    kinds = tuple(known) if args.kinds == "all" else tuple(args.kinds.split(","))
    if unknown := [k for k in kinds if k not in known]:
        parser.error(f"unknown question kinds {unknown}; choose from {', '.join(known)}")
    if args.seeds < 1 or args.minutes <= 0:
        parser.error("--seeds and --minutes must be positive")
    rows = []
    with om.Model(args.model, mmproj=args.mmproj, n_threads=args.threads) as model:
        for seed in tqdm(range(args.seeds), desc="streams", unit="stream"):
            rows += kind_answers(model, seed, args.minutes, kinds)
    print(f"{args.seeds} streams of {args.minutes:g} min, full memory, every well-posed question of the kinds\n")
    for kind in kinds:
        pairs = [(t, a) for k, t, a in rows if k == kind]
        print(confusion_table(kind, pairs) if pairs else f"`{kind}`: no well-posed question in these streams", "\n")
    if len(kinds) > 1 and rows:
        print(summary_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
