"""Where in an AV-Recall stream a bounded memory's rows come from: by tenth of the stream, and how many of
the rows that show an event or an object it keeps.

The benchmark reports what each cell answers; this script shows what each cell holds at the end of the
stream. For each cell it prints the share of its media rows that come from each tenth of the stream
(mean over the decoder layers; a memory spread evenly has 10 % in each), and the share it keeps of four
kinds of row: every media row, the frames of the two seconds after each visual event (an object
appears, disappears, changes colour or moves: what the visual questions are about), the patches of a
frame that show an object (a token at least half inside the box of an object on screen then), and the
audio rows inside a sound. Rows are told apart with a full memory fed the same chunks.

    python scripts/kept_rows_in_time.py --minutes 20 --budgets 4096 --policies attention-topk,omnimem,uniform
"""

from __future__ import annotations

import sys

import numpy as np

from omnimem_cpp.avrecall.bench import FULL, TENTHS, shares_kept, sound_rows, study_cells, study_parser
from omnimem_cpp.avrecall.config import AUDIO_TOKENS_PER_SECOND
from omnimem_cpp.memory import MODALITIES

EVENT_SECONDS = 2.0     # a visual event shows in the frames of this long after it


def seconds_in(rows: np.ndarray, first_position: int) -> np.ndarray:
    """Each row's time in the stream, in seconds: M-RoPE's temporal position runs at the audio tower's 25 rows
    a second for both modalities, from ``first_position``, the first media row's."""
    return (rows["pos"][:, 0] - first_position) / AUDIO_TOKENS_PER_SECOND


def event_frames(rows: np.ndarray, first_position: int, timeline) -> np.ndarray:
    """The tokens of the visual rows (of a memory that keeps every row) that show a visual event."""
    seconds = seconds_in(rows, first_position)
    visual = rows["modality"] == MODALITIES["visual"]
    showing = np.zeros(len(rows), bool)
    for e in timeline.visual_events():
        showing |= (seconds >= e.time) & (seconds < e.time + EVENT_SECONDS)
    return rows["token"][visual & showing]


def object_patches(rows: np.ndarray, first_position: int, stream) -> np.ndarray:
    """The tokens of the visual rows (of a memory that keeps every row) that show an object: the patch, at
    its M-RoPE h and w from the frame's first, lies at least half inside the box of an object on screen."""
    cover = stream.slot_cover()
    visual = rows[rows["modality"] == MODALITIES["visual"]]
    cell = visual["pos"][:, 1:] - visual["pos"][:, 1:].min(axis=0)
    seconds = seconds_in(visual, first_position)
    showing = np.zeros(len(visual), bool)
    for second in np.unique(seconds):
        at = seconds == second
        for _, slot in stream.timeline.state_at(float(second)).values():
            showing[at] |= cover[slot][cell[at, 0], cell[at, 1]] >= 0.5
    return visual["token"][showing]


def share_by_tenth(stream, first_position: int, seconds_long: float) -> np.ndarray:
    """The share of the stream's kept media rows in each tenth of the stream, mean over its layers
    (``first_position``: the first media row's temporal position)."""
    shares = []
    for layer in range(stream.model.info.n_layer):
        rows = stream.layer_rows(layer)
        media = rows["modality"] != MODALITIES["text"]
        seconds = seconds_in(rows[media], first_position)
        shares.append(np.bincount(np.minimum((seconds / seconds_long * TENTHS).astype(int), TENTHS - 1),
                                  minlength=TENTHS) / max(1, media.sum()))
    return np.mean(shares, axis=0)


def main(argv=None) -> int:
    parser = study_parser(__doc__, "4096", "omnimem,omnimem-nosplit,attention-topk,uniform,sink-window",
                          "policy specs as `omnimem bench avrecall --policies` takes them")
    args = parser.parse_args(argv)
    with study_cells(args) as (av, cells):
        full_rows = cells[FULL].layer_rows(0)
        is_media = full_rows["modality"] != MODALITIES["text"]
        media, first_position = full_rows["token"][is_media], full_rows["pos"][is_media, 0].min()
        frames = event_frames(full_rows, first_position, av.timeline)
        objects = object_patches(full_rows, first_position, av)
        _, sounds = sound_rows(full_rows, av.timeline)
        print(f"{av.config.seconds / 60:g} min, seed {av.config.seed}: {len(media)} media rows, {len(frames)} "
              f"of them frames showing a visual event, {len(objects)} patches showing an object, {len(sounds)} "
              "inside a sound")
        tenth_header = "".join(f"{k + 1:>5}" for k in range(TENTHS))
        print(f"{'policy':<26}{'budget':>7}{'kept':>7}{'events':>8}{'objects':>9}{'sounds':>8}   rows by tenth of "
              f"the stream:{tenth_header}")
        for (name, budget), s in cells.items():
            if budget is None:
                continue
            kept = shares_kept(s, media, frames, objects, sounds)
            by_tenth = share_by_tenth(s, first_position, av.config.seconds)
            print(f"{name:<26}{budget:>7}" + "".join(f"{v:>{w}.1%}" for v, w in zip(kept, (7, 8, 9, 8)))
                  + " " * 33 + "".join(f"{v:>5.0%}" for v in by_tenth))
    return 0


if __name__ == "__main__":
    sys.exit(main())
