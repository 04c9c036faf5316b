"""How much the lean redundancy vectors (the stored V rows) change OmniMem's choices against the method's
exact ones (layer-input hidden states), and what each costs per row.

Streams the same clip through two `omnimem` streams that differ only in `redundancy=` and reports, per
layer, the overlap (|A ∩ B| / |A ∪ B|) of the media rows each keeps after every chunk, plus the memory
per row of both modes. The streams see the same input; once their choices differ their memories do too,
so the overlap measures the practical effect, not a single selection.

    python -m benchmarks.redundancy_modes                     # the embedded demo model, a synthetic clip
    python -m benchmarks.redundancy_modes --model m.gguf --mmproj p.gguf --clip talk.mp4 --budget 512
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

import omnimem_cpp as om
from omnimem_cpp._native import ffi, lib
from omnimem_cpp.demo import DEMO_MODEL, DEMO_PROJECTOR, write_demo_clip


def row_bytes(model: om.Model, redundancy: str) -> int:
    params = ffi.new("om_stream_params *")
    lib.om_stream_default_params(params)
    params.memory.policy = lib.OM_POLICY_OMNIMEM
    params.memory.redundancy = om.memory.REDUNDANCY[redundancy]
    return int(lib.om_stream_row_bytes(model.handle, params))


def media_rows(stream: om.Stream, layer: int, media: set) -> set:
    return {t for t in stream.layer_tokens(layer).tolist() if t in media}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEMO_MODEL))
    parser.add_argument("--mmproj", default=str(DEMO_PROJECTOR))
    parser.add_argument("--clip", help="a video file (default: a synthetic 30-second clip)")
    parser.add_argument("--budget", type=int, default=64, help="media rows per layer on average")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, om.Model(args.model, mmproj=args.mmproj,
                                                        n_threads=args.threads) as model:
        clip = args.clip or write_demo_clip(Path(tmp) / "clip.mp4", seconds=30)
        n_layer = model.info.n_layer
        overlaps = [[] for _ in range(n_layer)]
        with model.stream("omnimem", budget=args.budget, redundancy="value") as lean, \
                model.stream("omnimem", budget=args.budget, redundancy="hidden") as exact:
            media: set = set()
            for chunk in om.media.open(clip):
                start = lean.n_tokens
                for s in (lean, exact):
                    s.feed(chunk)
                media |= set(range(start, lean.n_tokens))   # media chunks add media rows only
                for layer in range(n_layer):
                    a, b = media_rows(lean, layer, media), media_rows(exact, layer, media)
                    if a | b:
                        overlaps[layer].append(len(a & b) / len(a | b))
            compactions = lean.stats().compactions
        sizes = {mode: row_bytes(model, mode) for mode in ("value", "hidden")}
    per_layer = [float(np.mean(o)) for o in overlaps]
    result = {"model": Path(args.model).name, "clip": str(args.clip or "synthetic 30 s"), "budget": args.budget,
              "compactions": compactions, "overlap_per_layer": per_layer, "overlap_mean": float(np.mean(per_layer)),
              "row_bytes": sizes}
    print(f"{result['model']}, budget {args.budget} media rows per layer, {compactions} compactions")
    print("| layer | kept-set overlap, value vs hidden |\n|---|---|")
    for layer, o in enumerate(per_layer):
        print(f"| {layer} | {o:.3f} |")
    print(f"| mean | {result['overlap_mean']:.3f} |")
    print(f"bytes per row and layer: value mode {result['row_bytes']['value']}, "
          f"hidden mode {result['row_bytes']['hidden']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
