"""How far measuring the attention received from a few of a chunk's queries moves a bounded memory away from
the one the method's exact sum over every query keeps.

A stream measures the attention each row received from `score_queries` evenly spaced queries of each
evaluated batch (32 by default; 0: every query). This script feeds one AV-Recall stream in lockstep to
streams that differ only in that setting, and prints, for each policy, budget and setting, the share of the
media rows the exact memory holds at the end that the memory also holds (mean over the decoder layers).
Small differences compound: a row kept or dropped changes what later chunks are compared with. As a
yardstick, each OmniMem cell also runs at λ = 0, where the attention term is gone altogether.

    python scripts/score_queries_agreement.py --minutes 5 --budgets 1024,4096 --score-queries 8,32,128
"""

from __future__ import annotations

import sys

import numpy as np

import omnimem_cpp as om
from omnimem_cpp.avrecall import MODEL, PROJECTOR
from omnimem_cpp.avrecall.bench import fed_cells, parse_policy, study_parser, study_stream


def media_tokens(stream, layer: int) -> np.ndarray:
    rows = stream.layer_rows(layer)
    return rows["token"][rows["modality"] != 0]


def agreement(stream, exact) -> float:
    """The share of ``exact``'s media rows that ``stream`` keeps too, mean over the layers."""
    shares = [np.isin(media_tokens(exact, il), media_tokens(stream, il)).mean()
              for il in range(stream.model.info.n_layer)]
    return float(np.mean(shares))


def main(argv=None) -> int:
    parser = study_parser(__doc__, "1024,4096", "omnimem,attention-topk",
                          "the policies that measure the attention received, comma-separated")
    parser.add_argument("--score-queries", default="8,32,128", help="settings to compare with 0 (every query)")
    args = parser.parse_args(argv)
    budgets = [int(b) for b in args.budgets.split(",")]
    settings = [int(q) for q in args.score_queries.split(",")]

    cells = {}   # (policy, budget) -> [(label, spec)], the exact memory first
    for policy in args.policies.split(","):
        variants = [(f"score_queries={q}", parse_policy(f"{policy}:score_queries={q}")) for q in [0] + settings]
        if policy.startswith("omnimem"):
            variants.append(("lam=0", parse_policy(f"{policy}:lam=0")))
        for budget in budgets:
            cells[(policy, budget)] = variants
    av = study_stream(args)
    fed = [(spec, budget) for (_, budget), variants in cells.items() for _, spec in variants]
    with om.Model(MODEL, mmproj=PROJECTOR, n_threads=args.threads, encoder_cache=1) as model, \
            fed_cells(model, av, fed, full=False) as streams:
        print(f"{args.minutes:g} min AV-Recall stream, seed {args.seed}: share of the exact memory's media rows "
              "kept, mean over layers")
        labels = [f"score_queries={q}" for q in settings] + ["lam=0"]
        print(f"{'policy':<18}{'budget':>8}  " + "".join(f"{label:>18}" for label in labels))
        for (policy, budget), variants in cells.items():
            exact = streams[(variants[0][1].name, budget)]
            shares = {label: agreement(streams[(spec.name, budget)], exact) for label, spec in variants[1:]}
            print(f"{policy:<18}{budget:>8}  " + "".join(f"{shares[label]:>18.1%}" if label in shares else
                                                         f"{'-':>18}" for label in labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
