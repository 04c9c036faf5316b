"""Which audio rows of an AV-Recall stream a bounded memory keeps: a sound's first and last rows, the rows
inside it, or the background between sounds.

The AV-Recall benchmark reports the share of the sounds' audio rows each cell keeps
(`sound_rows_kept`). This script splits that share by where a row sits in its sound, to see what a
policy's score prefers. A sound is a steady two-tone pattern a second long (25 audio rows); its edge rows
(the first and last ``--edge`` rows of each tone) are where the audio changes, its inner rows are alike.

    python scripts/sound_rows_kept.py --minutes 5 --budgets 4096,16384 --policies omnimem,omnimem:lam=1

For each cell it prints the share of each kind of row the memory holds at the end of the stream, mean over
the decoder layers. Rows are told apart with a full memory fed the same chunks (the reference positions).
"""

from __future__ import annotations

import sys

import numpy as np

from omnimem_cpp.avrecall.bench import FULL, audio_rows, shares_kept, study_cells, study_parser
from omnimem_cpp.avrecall.config import AUDIO_TOKENS_PER_SECOND


def audio_row_kinds(rows: np.ndarray, timeline, edge: int) -> dict:
    """The tokens of the audio rows among ``rows`` (a full memory's), by kind: "edge" (within ``edge`` rows of
    a change of tone: a sound's start, its middle, its end), "inner" (the rest of a sound), "background"."""
    audio, row = audio_rows(rows)
    kind = np.full(len(audio), "background", dtype=object)
    for e in timeline.sounds():
        first, n = round(e.time * AUDIO_TOKENS_PER_SECOND), round(e.duration * AUDIO_TOKENS_PER_SECOND)
        inside = (row >= first) & (row < first + n)
        # rows from the nearest change of tone: the sound's start, the switch to its second tone, its end
        k = row[inside] - first
        to_change = np.min([np.where(k >= b, k - b, b - 1 - k) for b in (0, n // 2, n)], axis=0)
        kind[np.flatnonzero(inside)] = np.where(to_change < edge, "edge", "inner")
    return {name: audio["token"][kind == name] for name in ("edge", "inner", "background")}


def main(argv=None) -> int:
    parser = study_parser(__doc__, "4096,16384", "omnimem,omnimem:lam=1,omnimem-nosplit,uniform",
                          "policy specs as `omnimem bench avrecall --policies` takes them")
    parser.add_argument("--edge", type=int, default=1, help="rows on each side of a change that count as its edge")
    args = parser.parse_args(argv)
    with study_cells(args) as (av, cells):
        kinds = audio_row_kinds(cells[FULL].layer_rows(0), av.timeline, args.edge)
        print(f"audio rows: {', '.join(f'{len(t)} {k}' for k, t in kinds.items())} "
              f"(edge: within {args.edge} rows of a change of tone)")
        print(f"{'policy':<24}{'budget':>8}{'edge':>8}{'inner':>8}{'background':>12}")
        for (name, budget), s in cells.items():
            if budget is not None:
                shares = shares_kept(s, *kinds.values())
                print(f"{name:<24}{budget:>8}" + "".join("-".rjust(w) if v is None else f"{v:>{w}.0%}"
                                                         for v, w in zip(shares, (8, 8, 12))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
