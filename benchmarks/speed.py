"""`omnimem bench speed`: omnimem.cpp's speed beside llama.cpp's in one run, printed as one table.

    omnimem bench speed                      # every part; about 1.5 hours on a quiet 2-core machine
    omnimem bench speed --quick              # a smoke run of every part: minutes, not a measurement
    omnimem bench speed --parts bandwidth,stream --json speed.json

Parts (--parts, comma-separated; all by default):
  bandwidth  the machine's read-only memory bandwidth with --threads threads (bandwidth.py), at the start and
             at the end of the run (the faster counts): the ceiling of decode, which reads every weight once
             per token;
  text       decode and prefill tokens/s of the text decoder on random-weight GGUFs at Qwen2.5-Omni-3B
             dimensions (--types), omnimem.cpp beside every weight-buffer mode of llama.cpp on the same file,
             and the weight bandwidth decode reaches (text_speed.py);
  stream     time per answer token after each of --minutes of an audio-visual stream under an omnimem budget
             (--budget), on the shipped AV-Recall model; and llama.cpp on the same text model without
             compression: its K/V for every token of that stream, and its time per answer token at that
             context where filling it is affordable (--llama-max-tokens; beyond, a straight-line fit of the
             measured contexts, marked as such) (memory_scaling.py);
  ingest     one 2-second chunk stage by stage at 3B dimensions, beside libmtmd's towers, and what scoring
             and compaction add to it under a budget (ingest_speed.py);
  scoring    on the shipped AV-Recall model with its memory at --budget: the compaction pass per chunk, and
             the attention received the prefill graph computes for it, measured against a stream at λ = 0
             (scoring_cost.py).
Every engine runs in its own child process: a crash (llama.cpp's AMX buffers on GCC 12 builds) shows in the
table and the run goes on. Compare ratios within one run; the machine's speed drifts between runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import ingest_speed, memory_scaling, scoring_cost, text_speed
from .bandwidth import read_bandwidth_gbs
from .random_gguf import WEIGHT_TYPES
from .text_speed import DEFAULT_WORKDIR, busy_cpu_s, log, machine_description, own_cpu_s, write_report

PARTS = ("bandwidth", "text", "stream", "ingest", "scoring")
DEFAULT_TYPES = "f16,q8_0,q4_0"
DEFAULT_MINUTES = "1,60"
QUICK_MINUTES = "0.5,2"
DEFAULT_BUDGET = "8192"
DEFAULT_LLAMA_MAX_TOKENS = 60_000      # filling a context costs its square; 5 minutes of the stream fit

# Targets of the speed work, reported and never asserted.
DECODE_VS_LLAMA = 1.0
DECODE_VS_BANDWIDTH = 0.90
PREFILL_Q8_0_TOKENS_PER_S = 100.0
ANSWER_TIME_DRIFT = 0.10
BOUNDING_SHARE = 0.05


def _median(result: dict, kind: str) -> float | None:
    return result.get(kind, {}).get("median")


def _yes(met: bool | None) -> str:
    return "–" if met is None else ("yes" if met else "**no**")


def _best_llama(results: list[dict], kind: str) -> tuple[float | None, str]:
    """llama.cpp's best figure for one measurement over the modes that did not crash, and its mode."""
    found = [(m, r["label"]) for r in results if r["engine"] == "llama.cpp" and (m := _median(r, kind)) is not None]
    return max(found) if found else (None, "every mode failed")


def text_rows(text: dict, bandwidth: float | None) -> list[list[str]]:
    rows = []
    for wtype, results in text["results"].items():
        ours = next(r for r in results if r["engine"] == "omnimem.cpp")
        weights = text["decode_weight_bytes"][wtype]
        for kind, unit in (("decode", "tok/s"), ("prefill", "tok/s")):
            mine = _median(ours, kind)
            theirs, mode = _best_llama(results, kind)
            ratio = mine / theirs if mine and theirs else None
            target, met = f"≥ {DECODE_VS_LLAMA:.1f}× llama.cpp", None
            if ratio is not None:
                met = ratio >= DECODE_VS_LLAMA
            if kind == "prefill" and wtype == "q8_0":
                target += f"; ≥ {PREFILL_Q8_0_TOKENS_PER_S:.0f} tok/s"
                met = None if mine is None else bool(met) and mine >= PREFILL_Q8_0_TOKENS_PER_S
            rows.append([f"{wtype.upper()} {kind} ({unit})", _num(mine, ours, kind), f"{_fmt(theirs)} ({mode})",
                         f"{ratio:.2f}×" if ratio else "–", target, _yes(met)])
            if kind == "decode" and bandwidth:
                share = mine * weights / 1e9 / bandwidth if mine else None
                theirs_share = theirs * weights / 1e9 / bandwidth if theirs else None
                rows.append([f"{wtype.upper()} decode: weights read per second ÷ read-only bandwidth",
                             f"{share:.2f}" if share else "–", f"{theirs_share:.2f}" if theirs_share else "–", "",
                             f"≥ {DECODE_VS_BANDWIDTH:.2f}", _yes(None if share is None else share >= DECODE_VS_BANDWIDTH)])
                profiled = text_speed.matmul_share(results, "decode")
                if profiled:
                    mm_share, mm_gbs, _ = profiled
                    rows.append([f"{wtype.upper()} decode, every node timed alone: matrix products' share of the "
                                 "time; their read rate ÷ read-only bandwidth",
                                 f"{100 * mm_share:.0f} %; {mm_gbs / bandwidth:.2f}", "", "", "", ""])
            if kind == "prefill" and (profiled := text_speed.matmul_share(results, "prefill")):
                mm_share, _, mm_gflops = profiled
                rows.append([f"{wtype.upper()} prefill, every node timed alone: matrix products' share of the "
                             "time; their arithmetic rate", f"{100 * mm_share:.0f} %; {mm_gflops:.0f} GFLOP/s",
                             "", "", "", ""])
    return rows


def _fmt(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _num(v: float | None, result: dict, kind: str) -> str:
    return _fmt(v) if v is not None else result.get(kind, {}).get("status", "–")


def _answer_ms(checkpoint: dict) -> float | None:
    """Time per forced answer token after the question: the same steps in both engines."""
    return checkpoint.get("decode_steps", {}).get("decode_ms_per_token")


def llama_answer_ms(llama: dict, n_tokens: int) -> tuple[float | None, str]:
    """llama.cpp's time per answer token at a context of n_tokens: measured if that checkpoint ran, else the
    straight line through its two largest measured contexts (decode time grows linearly with the context)."""
    measured = [(c["n_tokens"], _answer_ms(c)) for c in llama.get("checkpoints", []) if _answer_ms(c)]
    exact = [ms for n, ms in measured if n == n_tokens]
    if exact:
        return exact[0], "measured"
    if len(measured) < 2:
        return None, "not measured"
    (n0, t0), (n1, t1) = sorted(measured)[-2:]
    slope = (t1 - t0) / (n1 - n0)
    return t0 + slope * (n_tokens - n0), f"fitted from {n0:,} and {n1:,} tokens"


def stream_rows(stream: dict, budget: str) -> list[list[str]]:
    ours, llama = stream["omnimem"], stream["llama.cpp"]
    cps = ours.get("checkpoints", [])
    per_token = llama.get("setup", {}).get("kv_bytes_per_token")
    rows = []
    for c in cps:
        theirs, how = llama_answer_ms(llama, c["n_tokens"])
        mine = _answer_ms(c)
        rows.append([f"answer token (ms) after {c['minute']:g} min of stream ({c['n_tokens']:,} tokens)",
                     f"{_fmt(mine)} (omnimem@{budget})", f"{_fmt(theirs)} (full context, {how})",
                     f"{theirs / mine:.1f}× faster" if mine and theirs else "–", "", ""])
        rows.append([f"K/V after {c['minute']:g} min (bytes)", memory_scaling._size(c["kv_bytes"]),
                     memory_scaling._size(c["n_tokens"] * per_token) if per_token else "–",
                     f"{c['n_tokens'] * per_token / c['kv_bytes']:.0f}× less" if per_token and c["kv_bytes"] else "–",
                     "", ""])
    if len(cps) >= 2 and _answer_ms(cps[0]) and _answer_ms(cps[-1]):
        drift = _answer_ms(cps[-1]) / _answer_ms(cps[0]) - 1
        rows.append([f"answer token time, minute {cps[-1]['minute']:g} against minute {cps[0]['minute']:g}",
                     f"{100 * drift:+.1f} %", "", "", f"within ±{100 * ANSWER_TIME_DRIFT:.0f} %",
                     _yes(abs(drift) <= ANSWER_TIME_DRIFT)])
    if cps and cps[-1].get("bound_share") is not None:
        share = cps[-1]["bound_share"]
        rows.append([f"scoring + compaction ÷ ingest over the stream ({cps[-1]['minute']:g} min)",
                     f"{100 * share:.1f} %", "", "", f"≤ {100 * BOUNDING_SHARE:.0f} %", _yes(share <= BOUNDING_SHARE)])
    for r, who in ((ours, "omnimem.cpp"), (llama, "llama.cpp")):
        if r.get("stopped"):
            rows.append([f"{who}: stopped", r["stopped"].get("message", r["stopped"].get("status")), "", "", "", ""])
    return rows


INGEST_STAGES = (("preprocess_video", "ingest: preprocess 4 frames (s)"),
                 ("preprocess_audio", "ingest: preprocess 2 s of audio (s)"),
                 ("vit_chunk", "ingest: vision tower, chunk (s)"),
                 ("audio_chunk", "ingest: audio tower, chunk (s)"),
                 ("prefill_chunk", "ingest: LLM prefill, chunk (s)"),
                 ("end_to_end", "ingest: whole chunk, full memory (s)"),
                 ("bounded_chunk", "ingest: two chunks under a budget, scoring and compaction included (s)"))


def ingest_rows(ingest: dict) -> list[list[str]]:
    ours, theirs = ingest["omnimem.cpp"], ingest["libmtmd"]
    rows = []
    for key, label in INGEST_STAGES:
        a, b = ours[key].get("median_s"), theirs[key].get("median_s")
        rows.append([label, _fmt(a, 3) if a is not None else ours[key].get("status", "–"),
                     f"{_fmt(b, 3)} (libmtmd)" if b is not None else "", f"{b / a:.2f}×" if a and b else "", "", ""])
    bounding = ours.get("bounding")
    if bounding:
        met = bounding["share"] <= BOUNDING_SHARE if bounding["compactions"] else None
        rows.append([f"ingest: scoring + compaction ÷ ingest, two chunks under a budget "
                     f"({bounding['compactions']} compaction(s))", f"{100 * bounding['share']:.2f} %", "", "",
                     f"≤ {100 * BOUNDING_SHARE:.0f} %", _yes(met)])
    return rows


def scoring_rows(scoring: dict, budget: str) -> list[list[str]]:
    share = scoring["scoring_share"]
    return [[f"scoring ÷ ingest at omnimem@{budget}, the attention received in the prefill graph included "
             f"(compaction pass {100 * scoring['compaction_share']:.1f} %, attention received "
             f"{scoring['attention_received_ms']:.0f} of {scoring['ingest_ms']:.0f} ms a chunk)",
             f"{100 * share:.1f} %", "", "", f"≤ {100 * BOUNDING_SHARE:.0f} %", _yes(share <= BOUNDING_SHARE)]]


def format_table(found: dict, budget: str) -> str:
    header = ["measurement", "omnimem.cpp", "llama.cpp", "ours ÷ theirs", "target", "met"]
    rows = []
    if "bandwidth_gbs" in found:
        readings = " and ".join(_fmt(v, 1) for v in found["bandwidth_gbs_runs"])
        rows.append([f"read-only memory bandwidth, {found['threads']} thread(s) (GB/s; the faster of the readings "
                     "at the run's start and end)", f"{_fmt(found['bandwidth_gbs'], 1)} ({readings})", "", "", "", ""])
    if "text" in found:
        rows += text_rows(found["text"], found.get("bandwidth_gbs"))
    if "stream" in found:
        rows += stream_rows(found["stream"], budget)
    if "ingest" in found:
        rows += ingest_rows(found["ingest"])
    if "scoring" in found:
        rows += scoring_rows(found["scoring"], budget)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _parts(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    return parts


DESCRIPTION = __doc__.split("\n\n")[0]
EPILOG = __doc__.split("\n\n", 2)[2]


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The options; `omnimem bench speed` takes them as a parent parser (add_help=False)."""
    ap = argparse.ArgumentParser(description=DESCRIPTION, epilog=EPILOG, add_help=add_help,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", type=_parts, default=list(PARTS), help=f"comma-separated, from {','.join(PARTS)}")
    ap.add_argument("--threads", type=int, default=2, help="threads of every engine (default 2)")
    ap.add_argument("--types", default=DEFAULT_TYPES, help="text part: weight types of the 3B-sized files")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (medians)")
    ap.add_argument("--minutes", type=memory_scaling._minutes, help=f"stream part: checkpoints (default {DEFAULT_MINUTES})")
    ap.add_argument("--budget", default=DEFAULT_BUDGET, help=f"stream part: omnimem's budget (default {DEFAULT_BUDGET})")
    ap.add_argument("--llama-max-tokens", type=int, default=DEFAULT_LLAMA_MAX_TOKENS,
                    help="stream part: the largest context llama.cpp fills (default %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights and media")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                    help="where the random-weight GGUFs are cached (about 15 GB for all types)")
    ap.add_argument("--json", type=Path, help="write every number and the machine description here")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: Q4_0 only, one repeat, short decode, stream minutes " + QUICK_MINUTES)
    return ap


def measure(args: argparse.Namespace) -> dict:
    found: dict = {"threads": args.threads}
    if "bandwidth" in args.parts:
        log("bandwidth ...")
        found["bandwidth_gbs_runs"] = [read_bandwidth_gbs(args.threads)]
    if "text" in args.parts:
        types = [t.strip() for t in args.types.split(",") if t.strip()]
        decode = text_speed.QUICK_DECODE if args.quick else text_speed.DEFAULT_DECODE
        cfg = text_speed.text_config(args.threads, text_speed.DEFAULT_PROMPT, decode, args.repeats, args.seed)
        results, weight_bytes, extra_bufts = text_speed.measure(types, cfg, args.workdir)
        found["text"] = {"config": cfg, "results": results, "decode_weight_bytes": weight_bytes,
                         "extra_bufts": extra_bufts}
    if "stream" in args.parts:
        found["stream"] = measure_stream(args)
    if "ingest" in args.parts:
        cfg = ingest_speed.ingest_config(args.threads, ingest_speed.DEFAULT_TEXT_TYPE, ingest_speed.DEFAULT_FRAME,
                                         args.repeats, args.seed, args.quick, args.workdir)
        found["ingest"] = ingest_speed.measure(cfg)
    if "scoring" in args.parts:
        log(f"scoring: omnimem@{args.budget}, profiled ...")
        found["scoring"] = scoring_cost.measure(scoring_cost.config(
            args.budget, 5 if args.quick else scoring_cost.DEFAULT_CHUNKS, args.repeats, 1, scoring_cost.DEFAULT_LAM, args.seed))
    if "bandwidth" in args.parts:
        # again at the end: this machine's speed drifts over minutes, and the ceiling is the faster reading
        if len(args.parts) > 1:
            found["bandwidth_gbs_runs"].append(read_bandwidth_gbs(args.threads))
        found["bandwidth_gbs"] = max(found["bandwidth_gbs_runs"])
    return found


def measure_stream(args: argparse.Namespace) -> dict:
    from omnimem_cpp.demo import DEMO_MODEL, DEMO_PROJECTOR

    minutes = args.minutes or memory_scaling._minutes(QUICK_MINUTES if args.quick else DEFAULT_MINUTES)
    cfg = {"model": str(DEMO_MODEL), "mmproj": str(DEMO_PROJECTOR), "device": "cpu", "threads": args.threads,
           "frame": [224, 168], "n_batch": 512, "max_tokens": 16 if args.quick else 32, "repeats": args.repeats,
           "max_attempts": 1 if args.quick else 3, "seed": args.seed, "budget": args.budget, "minutes": minutes,
           "full_max_bytes": 0, "timeout_s": 6 * 3600}
    log(f"stream: omnimem@{args.budget} up to minute {minutes[-1]:g} ...")
    ours = memory_scaling.run_child("omnimem", cfg)
    tokens = {str(c["minute"]): c["n_tokens"] for c in ours["checkpoints"]}
    log("stream: llama.cpp, the same tokens without compression ...")
    llama = memory_scaling.run_child("llama.cpp", {**cfg, "stream_tokens": tokens,
                                                   "llama_max_tokens": args.llama_max_tokens})
    return {"config": {k: v for k, v in cfg.items() if k not in ("model", "mmproj")}, "model": Path(DEMO_MODEL).name,
            "omnimem": ours, "llama.cpp": llama}


def run(args: argparse.Namespace) -> int:
    """Measures the chosen parts and prints the table; 2 if an option is wrong."""
    unknown = [t for t in args.types.split(",") if t.strip() and t.strip() not in WEIGHT_TYPES]
    if unknown:
        log(f"omnimem bench speed: error: unknown weight types {unknown}; known: {', '.join(sorted(WEIGHT_TYPES))}")
        return 2
    if args.quick:
        args.repeats = 1
        if args.types == DEFAULT_TYPES:
            args.types = "q4_0"
    machine = machine_description()
    t_start, busy_start, own_start = time.monotonic(), busy_cpu_s(), own_cpu_s()
    found = measure(args)
    wall_s = time.monotonic() - t_start
    others_cpu_s = max(0.0, (busy_cpu_s() - busy_start) - (own_cpu_s() - own_start))

    print(f"\n{machine['cpu']}, {machine['cores']} cores, {args.threads} thread(s); medians of {args.repeats}"
          + (" (--quick: a smoke run, not a measurement)" if args.quick else ""))
    print(format_table(found, args.budget))
    if "text" in found:
        print(text_speed.profile_tables(found["text"]["results"], found["text"]["config"]))
    print(f"\n{wall_s:.0f} s; other processes used {others_cpu_s:.0f} CPU-s meanwhile "
          f"({100 * others_cpu_s / (wall_s * os.cpu_count()):.0f}% of this machine)")
    if args.json:
        write_report(args.json, machine=machine, config={k: str(v) if isinstance(v, Path) else v
                                                         for k, v in vars(args).items() if k != "func"},
                     results=found, wall_s=wall_s, others_cpu_s=others_cpu_s)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
