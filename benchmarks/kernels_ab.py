"""Our kernels against ggml's on the same file, side by side in one process (use_repack on and off).

    python -m benchmarks.kernels_ab [--types f16,q8_0,q4_0] [--rounds 4] [--decode 16] [--prompt 512]
                                    [--threads 2] [--workdir DIR] [--json out.json]

On a machine whose speed drifts over minutes, `omnimem bench speed` (one engine after the other, minutes
apart) can read a drift as a difference. Here both models of a weight type are loaded at once and their runs
alternate, round by round: --decode single-token steps after an 8-token context, then one --prompt-token
batch from an empty context. The ratio of the medians is what to read; the best runs show the fast phases.
On a CPU without AMX, use_repack=True means ggml's CPU_REPACK layouts instead of our kernels (the output says
which: weights_packed_bytes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from .random_gguf import QWEN25_OMNI_3B, cached_text_gguf
from .text_speed import DEFAULT_WORKDIR, log, machine_description

CONTEXT = 8


def measure(path: Path, rounds: int, decode: int, prompt: int, threads: int, seed: int = 0) -> dict:
    """Per engine ("ours": use_repack=True, "ggml": use_repack=False): decode and prefill tokens/s of every
    round, and the bytes of weights our kernels took."""
    import omnimem_cpp as om

    engines = {}
    for name, use_repack in (("ours", True), ("ggml", False)):
        model = om.Model(str(path), n_threads=threads, device="cpu", use_repack=use_repack)
        engines[name] = (model, model.stream(n_ctx=prompt + CONTEXT + decode, n_batch=prompt, kv_type="f16"))
    n_vocab = min(engines["ours"][0].info.n_vocab, 151643)   # ids below the control tokens
    ids = np.random.default_rng(seed).integers(0, n_vocab, size=max(prompt, CONTEXT + decode), dtype=np.int32)
    out = {name: {"decode": [], "prefill": [], "weights_packed_bytes": m.info.weights_packed_bytes}
           for name, (m, _) in engines.items()}
    try:
        for _ in range(rounds):
            for name, (_, s) in engines.items():
                s.feed_tokens(ids[:CONTEXT])
                t = time.perf_counter()
                for i in range(decode):
                    s.feed_tokens(ids[CONTEXT + i:CONTEXT + i + 1])
                out[name]["decode"].append(decode / (time.perf_counter() - t))
                s.rollback(0)
                t = time.perf_counter()
                s.feed_tokens(ids[:prompt])
                out[name]["prefill"].append(prompt / (time.perf_counter() - t))
                s.rollback(0)
    finally:
        for model, s in engines.values():
            s.close()
            model.close()
    return out


def table(results: dict[str, dict]) -> str:
    lines = ["| weights | measurement | ours (median; best) | ggml (median; best) | ours ÷ ggml (medians) |",
             "|---|---|---|---|---|"]
    for wtype, r in results.items():
        for kind in ("decode", "prefill"):
            ours, ggml = r["ours"][kind], r["ggml"][kind]
            lines.append(f"| {wtype.upper()} | {kind} (tok/s) | {statistics.median(ours):.2f}; {max(ours):.2f} | "
                         f"{statistics.median(ggml):.2f}; {max(ggml):.2f} | "
                         f"{statistics.median(ours) / statistics.median(ggml):.2f}× |")
        lines.append(f"| {wtype.upper()} | weights in our kernels' layout | "
                     f"{r['ours']['weights_packed_bytes'] / 1e9:.2f} GB | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--types", default="f16,q8_0,q4_0", help="weight types of the 3B-sized random files")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--decode", type=int, default=16, help="timed single-token steps per round")
    ap.add_argument("--prompt", type=int, default=512, help="prefill batch length (tokens)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="where the random GGUFs are cached")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    results = {}
    for wtype in [t.strip() for t in args.types.split(",") if t.strip()]:
        path = cached_text_gguf(args.workdir, QWEN25_OMNI_3B, wtype, 0, log=log)
        log(f"[{wtype}] {args.rounds} rounds ...")
        results[wtype] = measure(path, args.rounds, args.decode, args.prompt, args.threads)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_description(), "config": vars(args) | {
            "workdir": str(args.workdir), "json": str(args.json)}, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
