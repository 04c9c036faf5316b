"""Text-model speed, omnimem.cpp beside llama.cpp, on one random-weight Qwen2.5-Omni-3B-sized GGUF per type.

    python -m benchmarks.text_speed [--types f16,q8_0,q4_0] [--threads 2] [--prompt 512] [--decode 128]
                                    [--repeats 3] [--json out.json] [--workdir DIR] [--quick]

For each weight type it measures, with the same file and thread count:
  prefill  one --prompt-token batch from an empty context (tokens/s), after a short warm-up batch;
  decode   --decode single-token steps after a short prompt (tokens/s).
Each figure is the median over --repeats; a timed run during which other processes took more than a tenth
of the machine is run again (up to three times the repeats) and the least disturbed runs are kept, since
one stolen core stalls all of ggml's threads. Engines and modes:
  llama.cpp default  llama.cpp's own choice of weight buffers, its "extra" buffer types included (AMX
                     and/or CPU_REPACK, whatever this CPU offers);
  llama.cpp plain    use_extra_bufts off: weights used as stored in the file;
  llama.cpp repack   CPU_REPACK only, for types that have a repacked layout on this CPU;
  omnimem.cpp        Model(use_repack=True): our own kernels on CPUs with AMX, ggml's layouts elsewhere.
Every engine runs in its own child process: a crash (llama.cpp's AMX buffers fault on batched matmuls with
GCC 12 builds: SIGSEGV or SIGILL, by machine) is reported as "crash" instead of ending the benchmark. Decode runs before prefill and
feeds its prompt one token at a time, so that a mode which crashes on batches still reports decode speed.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import importlib.metadata
import json
import multiprocessing
import os
import platform
import resource
import signal
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from .random_gguf import QWEN25_OMNI_3B, WEIGHT_TYPES, cached_text_gguf, decode_weight_bytes

DEFAULT_PROMPT = 512       # prefill batch length (tokens)
DEFAULT_DECODE = 128       # timed single-token decode steps
QUICK_DECODE = 16
DEFAULT_WORKDIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "omnimem-cpp" / "benchmarks"

SHORT_PROMPT = 8      # context already present when decode steps are timed
WARMUP_BATCH = 32     # untimed batch before prefill timing: first-touch costs, thread start-up
N_CTX = 1024
CHILD_TIMEOUT_S = 3600
QUIET_SHARE = 0.10    # a timed run is "quiet" if other processes used at most this share of all cores
MAX_ATTEMPTS = 3

# The matmul weights: what llama.cpp itself would put in an extra buffer type (token_embd is read with
# get_rows and stays in a plain buffer).
MATMUL_WEIGHTS_REGEX = rb"^(output|blk\.[0-9]+\.(attn_(q|k|v|output)|ffn_(gate|up|down)))\.weight$"


# --------------------------------------------------------------------------------------------- engines


class _BuftOverride(ctypes.Structure):
    # struct llama_model_tensor_buft_override of llama.h; the Python bindings declare the field as void *.
    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


def _cpu_extra_bufts() -> dict[str, int]:
    """Name -> handle of the CPU backend's extra weight buffer types (AMX, CPU_REPACK, ...)."""
    from llama_cpp._ggml import libggml as g

    g.ggml_backend_dev_by_type.argtypes, g.ggml_backend_dev_by_type.restype = [ctypes.c_int], ctypes.c_void_p
    g.ggml_backend_dev_backend_reg.argtypes = [ctypes.c_void_p]
    g.ggml_backend_dev_backend_reg.restype = ctypes.c_void_p
    g.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    g.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
    g.ggml_backend_buft_name.argtypes, g.ggml_backend_buft_name.restype = [ctypes.c_void_p], ctypes.c_char_p

    cpu = g.ggml_backend_dev_by_type(0)  # GGML_BACKEND_DEVICE_TYPE_CPU
    addr = g.ggml_backend_reg_get_proc_address(g.ggml_backend_dev_backend_reg(cpu), b"ggml_backend_dev_get_extra_bufts")
    if not addr:
        return {}
    bufts = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p)(addr)(cpu)
    found, i = {}, 0
    while bufts and bufts[i]:
        found[g.ggml_backend_buft_name(bufts[i]).decode()] = bufts[i]
        i += 1
    return found


class LlamaCppEngine:
    """llama.cpp through llama-cpp-python's low-level API, which exposes the weight-buffer choices that
    Llama() does not (use_extra_bufts, tensor_buft_overrides)."""

    def __init__(self, path: Path, mode: str, n_threads: int, n_batch: int, n_ctx: int = N_CTX):
        import llama_cpp as L

        self.L = L
        # A no-op log callback: llama.cpp's loading chatter would bury the progress lines.
        self._log_cb = L.llama_log_callback(lambda level, text, data: None)
        L.llama_log_set(self._log_cb, None)
        L.llama_backend_init()

        mp = L.llama_model_default_params()
        mp.use_extra_bufts = mode == "default"
        if mode == "repack":
            repack = _cpu_extra_bufts()["CPU_REPACK"]
            self._overrides = (_BuftOverride * 2)((MATMUL_WEIGHTS_REGEX, repack), (None, None))
            mp.tensor_buft_overrides = ctypes.cast(self._overrides, ctypes.c_void_p)
        self.model = L.llama_model_load_from_file(str(path).encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")

        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = n_ctx, n_batch, n_batch, 1
        cp.n_threads = cp.n_threads_batch = n_threads
        cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_ENABLED
        cp.type_k = cp.type_v = L.GGML_TYPE_F16
        cp.no_perf = True
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context")
        self.mem = L.llama_get_memory(self.ctx)
        self.batch = L.llama_batch_init(n_batch, 0, 1)
        self.n_past = 0

    def kv_bytes_per_token(self) -> int:
        """Bytes of the F16 K and V of one token over all layers."""
        L, m = self.L, self.model
        return L.llama_model_n_layer(m) * 2 * L.llama_model_n_head_kv(m) * (L.llama_model_n_embd(m) // L.llama_model_n_head(m)) * 2

    def reset(self, n_keep: int) -> None:
        self.L.llama_memory_seq_rm(self.mem, 0, n_keep, -1)
        self.n_past = n_keep

    def feed(self, ids: np.ndarray) -> None:
        b, n = self.batch, len(ids)
        for i, tok in enumerate(ids.tolist()):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, self.n_past + i, 1, 0
            b.seq_id[i][0] = 0
        b.logits[n - 1] = 1
        b.n_tokens = n
        rc = self.L.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        self.L.llama_get_logits_ith(self.ctx, -1)  # waits for the result, as reading logits would
        self.n_past += n


class OmnimemEngine:
    def __init__(self, path: Path, mode: str, n_threads: int, n_batch: int):
        import omnimem_cpp as om

        self.model = om.Model(str(path), n_threads=n_threads, device="cpu", use_repack=mode == "repack")
        self.stream = self.model.stream(n_ctx=N_CTX, n_batch=n_batch, kv_type="f16")

    def reset(self, n_keep: int) -> None:
        self.stream.rollback(n_keep)

    def feed(self, ids: np.ndarray) -> None:
        self.stream.feed_tokens(ids)

    def profile(self, run) -> list[dict]:
        """Per-operation totals of `run` (Stream.profile: each graph node computed and timed alone)."""
        with self.stream.profile() as prof:
            run()
        return [dataclasses.asdict(op) for op in prof.ops]


ENGINES = {"llama.cpp": LlamaCppEngine, "omnimem.cpp": OmnimemEngine}


# ------------------------------------------------------------------------------------------ child side


def busy_cpu_s() -> float:
    """CPU seconds all processes of this machine have used since boot (the "cpu" line of /proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process and its finished children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _timed_rates(repeats: int, n_tokens: int, reset, run) -> dict:
    """Tokens/s of `repeats` timed runs. ggml's threads wait for each other at every op, so one thread
    losing its core to another process slows a whole step several times over: a run during which other
    processes took more than QUIET_SHARE of the machine is repeated (at most MAX_ATTEMPTS times the
    repeats), and the least disturbed runs are kept."""
    samples = []
    for _ in range(repeats * MAX_ATTEMPTS):
        reset()
        busy0, own0, t0 = busy_cpu_s(), own_cpu_s(), time.perf_counter()
        run()
        dt = time.perf_counter() - t0
        others = max(0.0, (busy_cpu_s() - busy0) - (own_cpu_s() - own0)) / (dt * os.cpu_count())
        samples.append((others, n_tokens / dt))
        if sum(o <= QUIET_SHARE for o, _ in samples) >= repeats:
            break
    kept = sorted(samples, key=lambda sample: sample[0])[:repeats]
    return {"runs": [rate for _, rate in kept], "others_cpu_share": [round(o, 3) for o, _ in kept],
            "attempts": len(samples)}


def _child(conn, engine_name: str, mode: str, path: str, cfg: dict) -> None:
    """Runs in a child process; sends ("decode"|"profile"|"prefill"|"unavailable"|"error", payload) messages.
    Each result is sent as soon as it exists, so results measured before a crash are kept."""
    try:
        engine = ENGINES[engine_name](Path(path), mode, cfg["threads"], cfg["prompt"])
    except ImportError as e:
        conn.send(("unavailable", f"{type(e).__name__}: {e}"))
        return
    except Exception as e:  # reported in the table; the parent goes on with the next engine
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return

    rng = np.random.default_rng(cfg["seed"])
    short, steps, prompt = (rng.integers(0, cfg["n_vocab_normal"], size=n, dtype=np.int32)
                            for n in (SHORT_PROMPT, cfg["decode"], cfg["prompt"]))
    try:
        engine.reset(0)
        for i in range(SHORT_PROMPT):
            engine.feed(short[i:i + 1])

        def decode():
            for i in range(len(steps)):
                engine.feed(steps[i:i + 1])

        conn.send(("decode", _timed_rates(cfg["repeats"], len(steps), lambda: engine.reset(SHORT_PROMPT), decode)))
        if hasattr(engine, "profile"):   # omnimem.cpp: where the same decode steps spend their time
            engine.reset(SHORT_PROMPT)
            conn.send(("profile", {"kind": "decode", "ops": engine.profile(decode)}))

        engine.reset(0)
        engine.feed(prompt[:WARMUP_BATCH])
        conn.send(("prefill", _timed_rates(cfg["repeats"], len(prompt), lambda: engine.reset(0),
                                           lambda: engine.feed(prompt))))
        if hasattr(engine, "profile"):
            engine.reset(0)
            conn.send(("profile", {"kind": "prefill", "ops": engine.profile(lambda: engine.feed(prompt))}))
    except Exception as e:
        conn.send(("error", f"{type(e).__name__}: {e}"))


# ----------------------------------------------------------------------------------------- parent side


def run_child(engine: str, mode: str, path: Path, cfg: dict) -> dict:
    """Results of one engine/mode: per measurement {"runs": [...], "median": x} or {"status": "..."}."""
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no state shared with other engines
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, engine, mode, str(path), cfg), daemon=True)
    proc.start()
    send.close()
    out: dict = {"engine": engine, "mode": mode}
    status = None
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while True:
        if not recv.poll(max(0.0, deadline - time.monotonic())):
            proc.kill()
            status = "timeout"
            break
        try:
            kind, payload = recv.recv()
        except EOFError:
            break
        if kind in ("decode", "prefill"):
            out[kind] = {**payload, "median": statistics.median(payload["runs"])}
        elif kind == "profile":
            out[f"{payload['kind']}_profile"] = payload["ops"]
        else:
            status = "unavailable" if kind == "unavailable" else "error"
            out["message"] = payload
    proc.join()
    if status is None and proc.exitcode and proc.exitcode < 0:
        status = f"crash ({signal.Signals(-proc.exitcode).name})"
    for kind in ("decode", "prefill"):
        out.setdefault(kind, {"status": status or "error"})
    return out


def machine_description() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem_kb = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), 0)
    versions = {dist: importlib.metadata.version(dist) for dist in ("llama-cpp-python", "gguf", "numpy")}
    try:  # also when run from a source tree with the library built in place
        import omnimem_cpp

        versions["omnimem-cpp"] = omnimem_cpp.__version__
    except ImportError:
        versions["omnimem-cpp"] = None
    return {
        "cpu": fields.get("model name", platform.processor()),
        "cores": len(os.sched_getaffinity(0)),
        "ram_gib": round(mem_kb / 2**20, 1),
        "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                                     "amx_tile", "amx_int8", "amx_bf16"}),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
    }


# Which weight types each extra buffer type of ggml's x86 CPU backend takes (ggml-cpu's amx/ and repack.cpp):
# AMX has kernels for Q4_0, Q8_0 and F16; CPU_REPACK has an x86 layout for Q4_0 only. A buffer type not
# listed here is assumed to take every type, which at worst measures a mode twice.
EXTRA_BUFT_TYPES = {"AMX": {"f16", "q8_0", "q4_0"}, "CPU_REPACK": {"q4_0"}}


def plan(wtype: str, extra_bufts: list[str]) -> list[dict]:
    """The engine/mode runs for one weight type. llama.cpp's default mode is measured only where some extra
    buffer type takes this weight type (otherwise it is the plain mode), and CPU_REPACK alone only where
    it differs from the default; the run whose buffers match omnimem.cpp's use_repack=True is marked."""
    used = [b for b in extra_bufts if wtype in EXTRA_BUFT_TYPES.get(b, {wtype})]
    runs = []
    if used:
        runs.append({"engine": "llama.cpp", "mode": "default", "label": f"default ({'+'.join(used)} buffers)"})
    runs.append({"engine": "llama.cpp", "mode": "plain",
                 "label": "plain buffers" + ("" if used else " (= default here)")})
    if "CPU_REPACK" in used and used != ["CPU_REPACK"]:
        runs.append({"engine": "llama.cpp", "mode": "repack", "label": "CPU_REPACK buffers only"})
    same = "repack" if "CPU_REPACK" in used else "plain"
    if used == ["CPU_REPACK"]:
        same = "default"
    for r in runs:
        r["same_buffers_as_ours"] = r["mode"] == same
    runs.append({"engine": "omnimem.cpp", "mode": "repack", "label": "use_repack=True"})
    return runs


def _median(result: dict, kind: str) -> float | None:
    return result[kind].get("median")


def _cell(result: dict, kind: str, fmt: str) -> str:
    m = _median(result, kind)
    return fmt.format(m) if m is not None else result[kind]["status"]


def ratio_rows(wtype: str, results: list[dict]) -> list[list[str]]:
    ours = next(r for r in results if r["engine"] == "omnimem.cpp")
    peers = [r for r in results if r["engine"] == "llama.cpp"]
    same = next(r for r in peers if r["same_buffers_as_ours"])
    rows = []
    for label, pick in (("÷ best llama.cpp", None), (f"÷ llama.cpp, same buffers ({same['mode']})", same)):
        cells = []
        for kind in ("prefill", "decode"):
            mine = _median(ours, kind)
            if pick is None:
                candidates = [(m, r["mode"]) for r in peers if (m := _median(r, kind)) is not None]
                theirs, mode = max(candidates) if candidates else (None, "")
            else:
                theirs, mode = _median(pick, kind), pick["mode"]
            which = f" (vs {mode})" if pick is None else ""
            cells.append(f"{mine / theirs:.2f}×{which}" if mine and theirs else "–")
        rows.append([wtype.upper(), "omnimem.cpp", label, *cells, ""])
    return rows


def table(all_results: dict[str, list[dict]], weight_bytes: dict[str, int]) -> str:
    header = ["weights", "engine", "mode", "prefill tok/s", "decode tok/s", "decode GB/s (weights read)"]
    rows = []
    for wtype, results in all_results.items():
        for r in results:
            m = _median(r, "decode")
            bw = f"{m * weight_bytes[wtype] / 1e9:.1f}" if m is not None else "–"
            rows.append([wtype.upper(), r["engine"], r["label"], _cell(r, "prefill", "{:.1f}"),
                         _cell(r, "decode", "{:.2f}"), bw])
        if any(r["engine"] == "omnimem.cpp" and _median(r, "decode") is not None for r in results):
            rows += ratio_rows(wtype, results)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def omnimem_profile(results: list[dict], kind: str):
    """omnimem.cpp's per-operation profile of its decode steps or prefill batch among one type's results, or
    None."""
    ops = next((r.get(f"{kind}_profile") for r in results if r["engine"] == "omnimem.cpp"), None)
    if not ops:
        return None
    from omnimem_cpp.profile import OpTime, Profile

    return Profile([OpTime(**op) for op in ops])


def matmul_share(results: list[dict], kind: str) -> tuple[float, float, float] | None:
    """From omnimem.cpp's profile of `kind`: the matrix products' share of the node time, the rate (GB/s) at
    which they read their operands and their arithmetic rate (GFLOP/s), each node timed alone."""
    prof = omnimem_profile(results, kind)
    if prof is None or prof.seconds <= 0:
        return None
    mm = prof["MUL_MAT"]
    return mm.seconds / prof.seconds, mm.read_gbs, mm.gflops


def profile_tables(all_results: dict[str, list[dict]], cfg: dict) -> str:
    """omnimem.cpp's decode steps and prefill batch per operation, per token, one markdown table each."""
    parts = []
    for wtype, results in all_results.items():
        for kind, n_tokens, what in (("decode", cfg["decode"], f"{cfg['decode']} single-token steps"),
                                     ("prefill", cfg["prompt"], f"one {cfg['prompt']}-token batch")):
            prof = omnimem_profile(results, kind)
            if prof is not None:
                launch = prof.launch_seconds
                parts.append(f"\n{wtype.upper()} {kind}, omnimem.cpp, per operation ({what}, every node timed alone"
                             + (f"; a launch takes {1e6 * launch:.1f} µs" if launch else "") + "):\n"
                             + prof.table(per=n_tokens))
    return "\n".join(parts)


def write_report(path: Path, *, machine: dict, config: dict, results, wall_s: float, others_cpu_s: float,
                 **extra) -> None:
    """The JSON every benchmark writes: the machine, the settings, every result, and how busy the machine was."""
    doc = {"machine": machine, "config": config, **extra, "results": results, "wall_s": round(wall_s, 1),
           "other_processes_cpu_s": round(others_cpu_s, 1)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def frame_size(text: str) -> tuple[int, int]:
    """argparse type of a WIDTHxHEIGHT video frame size."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 336x308, got {text!r}") from None
    if width < 28 or height < 28:
        raise argparse.ArgumentTypeError("frames must be at least 28×28 pixels")
    return width, height


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def text_config(threads: int, prompt: int, decode: int, repeats: int, seed: int) -> dict:
    """The settings every engine's child gets."""
    return {"threads": threads, "prompt": prompt, "decode": decode, "repeats": repeats, "seed": seed,
            "n_vocab_normal": min(QWEN25_OMNI_3B.n_vocab, 151643)}  # ids below the control tokens


def measure(types: list[str], cfg: dict, workdir: Path) -> tuple[dict, dict, list[str]]:
    """Every engine and weight-buffer mode on one random-weight 3B-sized file per weight type: the results
    per type, the bytes of weights a decode step reads per type, and the CPU's extra buffer types."""
    extra_bufts = sorted(_cpu_extra_bufts())
    path_of = {t: cached_text_gguf(workdir, QWEN25_OMNI_3B, t, cfg["seed"], log=log) for t in types}
    weight_bytes = {t: decode_weight_bytes(p) for t, p in path_of.items()}
    all_results: dict[str, list[dict]] = {}
    for wtype in types:
        all_results[wtype] = []
        for run in plan(wtype, extra_bufts):
            t0 = time.monotonic()
            r = {**run, **run_child(run["engine"], run["mode"], path_of[wtype], cfg)}
            all_results[wtype].append(r)
            log(f"[{wtype}] {r['engine']} {r['label']}: prefill {_cell(r, 'prefill', '{:.1f}')}, "
                f"decode {_cell(r, 'decode', '{:.2f}')} ({time.monotonic() - t0:.0f} s)"
                + (f" — {r['message']}" if "message" in r else ""))
    return all_results, weight_bytes, extra_bufts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--types", default="f16,q8_0,q4_0", help=f"comma-separated, from {','.join(WEIGHT_TYPES)}")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=DEFAULT_PROMPT, help="prefill batch length (tokens)")
    ap.add_argument("--decode", type=int, default=DEFAULT_DECODE, help="timed single-token decode steps")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights and token ids")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="where the random GGUFs are cached")
    ap.add_argument("--json", type=Path, help="write every number and the machine description here")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 repeat, 16 decode steps")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.decode = 1, QUICK_DECODE
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    unknown = [t for t in types if t not in WEIGHT_TYPES]
    if unknown:
        ap.error(f"unknown weight types {unknown}; known: {sorted(WEIGHT_TYPES)}")
    if args.prompt + SHORT_PROMPT + args.decode > N_CTX:
        ap.error(f"--prompt + --decode must leave room in a {N_CTX}-token context")

    import llama_cpp

    cfg = text_config(args.threads, args.prompt, args.decode, args.repeats, args.seed)
    # Other processes compete for the same cores; their CPU time during the run says how far to trust it.
    t_start, busy_start, own_start = time.monotonic(), busy_cpu_s(), own_cpu_s()
    all_results, weight_bytes, extra_bufts = measure(types, cfg, args.workdir)
    wall_s = time.monotonic() - t_start
    others_cpu_s = max(0.0, (busy_cpu_s() - busy_start) - (own_cpu_s() - own_start))

    print(f"\nQwen2.5-Omni-3B text dims, random weights, {args.threads} threads, prefill = one {args.prompt}-token "
          f"batch, decode = {args.decode} steps; medians of {args.repeats}")
    print(table(all_results, weight_bytes))
    print(profile_tables(all_results, cfg))
    print(f"\n{wall_s:.0f} s; other processes used {others_cpu_s:.0f} CPU-s meanwhile "
          f"({100 * others_cpu_s / (wall_s * os.cpu_count()):.0f}% of this machine)")
    if args.json:
        write_report(args.json,
                     machine={**machine_description(), "ggml_extra_bufts": extra_bufts,
                              "ggml_system_info": llama_cpp.llama_print_system_info().decode().strip()},
                     config={**cfg, "types": types, "n_ctx": N_CTX, "short_prompt": SHORT_PROMPT,
                             "warmup_batch": WARMUP_BATCH, "model": QWEN25_OMNI_3B.name},
                     decode_weight_bytes=weight_bytes, results=all_results, wall_s=wall_s,
                     others_cpu_s=others_cpu_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
