"""Memory and answer speed as one audio-visual stream grows, `full` memory beside `omnimem` at a fixed budget.

    python -m benchmarks.memory_scaling [--minutes 1,5,20,60] [--policies full,omnimem] [--budget 256]
                                        [--model TEXT.gguf --mmproj PROJECTOR.gguf] [--threads N]
                                        [--frame 224x168] [--max-tokens 32] [--repeats 3] [--full-max-gib G]
                                        [--json out.json] [--png out.png] [--quick]

A seeded generator makes the media: a square moving over a background and a tone, both changing every
10-s scene, with a little noise. It is fed as a live stream arrives, one 2-s chunk at a time (4 frames at
2 fps and 32,000 samples of 16 kHz audio) through Stream.feed(video=..., audio=..., fps=2.0). At each
checkpoint (minutes of media fed) it records:
  KV bytes        Stream.stats(): bytes of the live rows, and bytes allocated (the stream's memory bound);
                  rows per layer by modality;
  RSS             the process's resident memory (VmRSS; VmHWM, the peak so far, beside it);
  answer tokens   s.ask(question, max_tokens=N, stream=True, keep=False), so that asking leaves the stream as
                  it was. "decode ms/token": the time between the first and the last answer piece over the
                  tokens fed in between; "ask ms/token": the whole ask over its answer tokens. A whole ask
                  also evaluates the chunk still pending (the stream evaluates a 2-s chunk once the next has
                  begun: the log-mel front end needs samples beyond it) and the question. Medians of
                  --repeats asks after an untimed one; an ask during which other processes took more than a
                  tenth of the machine is asked again, as in text_speed.py;
  bounding cost   (score_seconds + compact_seconds) / ingest_seconds of Stream.stats(), over the feeds only:
                  an ask evaluates the pending chunk, which the stream evaluates again after the ask's
                  rollback, so what the asks added to the timers is taken out.
                  The attention that rows receive comes out of the prefill graph and counts as ingest only.
Targets, reported and not asserted: memory flat under a budget; decode time per answer token at the last
checkpoint within 10% of the first; scoring + compaction at most 5% of ingest time.

The default model is the tiny random-weight demo pair embedded in the package (its answers are noise; their
cost is what is measured), run with 1 thread, since more would only wait on each other; other models get 2.
A `full` stream gets n_ctx for the last checkpoint whose memory fits --full-max-gib (default: 80% of the
memory available at the start): its K/V allocation, which the runtime zeroes at creation and so is resident
from the start, plus the attention mask of a chunk over the whole memory (F16 on the host and in the graph:
4 bytes per entry). Beyond that checkpoint `full` stops with a note. Every chunk of a `full`
stream attends over all the memory, so its time per chunk grows with the stream: on a CPU, 60 minutes of
`full` take hours (--policies omnimem leaves it out; --timeout-min bounds each policy). Each policy runs in
its own child process, so its RSS is its own, and a crash or timeout keeps the checkpoints it reported.
--quick streams 1 and 5 minutes with one ask per checkpoint (an explicit --minutes wins). --png needs
matplotlib, which is not a dependency.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import resource
import signal
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from .text_speed import (
    MAX_ATTEMPTS,
    QUIET_SHARE,
    busy_cpu_s,
    frame_size,
    log,
    machine_description,
    own_cpu_s,
    write_report,
)

CHUNK_S = 2.0
FPS = 2.0
SAMPLE_RATE = 16000
SCENE_S = 10.0              # a multiple of CHUNK_S: a chunk's audio lies within one scene
QUESTION = "What colour was the square when the tone was highest?"
PROBE_N_CTX = 8192          # the warm-up stream: three chunks and a question
MASK_BYTES = 8              # per attention-mask entry of a chunk over the memory: F32 + F16 host copies, F16 graph
PROGRESS_S = 30.0
LLAMA_TOKEN_IDS = 256       # random ids for llama.cpp's context: below any vocabulary's size
DEFAULT_MINUTES = "1,5,20,60"
QUICK_MINUTES = "1,5"


# ----------------------------------------------------------------------------------------- the media


class SyntheticMedia:
    """Seeded 2-s chunks: frames of a square moving over a background, and a tone; colours and pitch change
    every scene. Chunk i depends on the seed and i only, so every policy sees the same stream without it
    being stored."""

    def __init__(self, seed: int, width: int, height: int):
        self.seed, self.width, self.height = seed, width, height
        self._scenes: dict[int, tuple] = {}

    def scene(self, index: int) -> tuple:
        if index not in self._scenes:
            rng = np.random.default_rng([self.seed, 0, index])
            self._scenes = {index: (rng.integers(0, 256, 3, dtype=np.uint8), rng.integers(0, 256, 3, dtype=np.uint8),
                                    float(rng.uniform(200.0, 1200.0)))}   # one scene at a time: bounded
        return self._scenes[index]

    def chunk(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 1, i])
        w, h = self.width, self.height
        side = max(2, h // 4)
        t0 = i * CHUNK_S
        n_frames = int(CHUNK_S * FPS)
        frames = np.empty((n_frames, h, w, 3), dtype=np.uint8)
        for f in range(n_frames):
            t = t0 + f / FPS
            background, square, _ = self.scene(int(t // SCENE_S))
            frames[f] = background
            x = int((t % SCENE_S) / SCENE_S * (w - side))
            y = int((h - side) / 2 * (1 + 0.5 * math.sin(2 * math.pi * t / SCENE_S)))
            frames[f, y:y + side, x:x + side] = square
        noise = rng.integers(-6, 7, size=frames.shape, dtype=np.int16)
        frames = np.clip(frames + noise, 0, 255).astype(np.uint8)

        n = int(CHUNK_S * SAMPLE_RATE)
        t = t0 + np.arange(n) / SAMPLE_RATE   # absolute time: the tone's phase runs on across chunks
        pitch = self.scene(int(t0 // SCENE_S))[2]
        pcm = 0.3 * np.sin(2 * np.pi * pitch * t) * (0.6 + 0.4 * np.sin(np.pi * t)) + 0.02 * rng.standard_normal(n)
        return frames, pcm.astype(np.float32)


# ------------------------------------------------------------------------------------- measuring


def _status_bytes(key: str) -> int | None:
    """A memory figure of this process from /proc/self/status (VmRSS, VmHWM), in bytes."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _rss() -> dict:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # Linux reports KiB
    return {"rss_bytes": _status_bytes("VmRSS") or peak, "rss_peak_bytes": _status_bytes("VmHWM") or peak}


def _others_share(busy0: float, own0: float, seconds: float) -> float:
    """Share of the machine other processes used while this one ran for `seconds`."""
    if seconds <= 0:
        return 0.0
    return max(0.0, (busy_cpu_s() - busy0) - (own_cpu_s() - own0)) / (seconds * os.cpu_count())


def _ask_once(s, max_tokens: int) -> dict:
    """One ask, answer streamed. The stream's length after each piece counts the answer tokens fed so far,
    so that decode time is divided by tokens, not pieces (a piece may take several tokens)."""
    marks, pieces = [], []
    t0 = time.perf_counter()
    for piece in s.ask(QUESTION, max_tokens=max_tokens, stream=True, keep=False):
        marks.append((time.perf_counter(), s.n_tokens))
        pieces.append(piece)
    total = time.perf_counter() - t0
    out = {"ask_s": total, "first_piece_s": marks[0][0] - t0 if marks else None, "decode_ms_per_token": None,
           "answer_tokens": 0, "answer": "".join(pieces)[:80]}
    if marks:
        n_first, n_last = marks[0][1], marks[-1][1]
        t_last = next(t for t, n in marks if n == n_last)   # a final flush of partial UTF-8 feeds no token
        out["answer_tokens"] = n_last - n_first + 1
        if n_last > n_first:
            out["decode_ms_per_token"] = 1e3 * (t_last - marks[0][0]) / (n_last - n_first)
    out["ask_ms_per_token"] = 1e3 * total / out["answer_tokens"] if out["answer_tokens"] else None
    return out


def measure_asks(s, max_tokens: int, repeats: int, max_attempts: int) -> dict:
    """Median figures of `repeats` asks after an untimed one (graphs at this memory size allocated); asks
    disturbed by other processes are asked again (up to max_attempts times) and the least disturbed kept."""
    mark = s.n_tokens
    _ask_once(s, 2)
    samples = []
    for _ in range(repeats * max_attempts):
        busy0, own0, t0 = busy_cpu_s(), own_cpu_s(), time.perf_counter()
        r = _ask_once(s, max_tokens)
        r["others_cpu_share"] = _others_share(busy0, own0, time.perf_counter() - t0)
        samples.append(r)
        if sum(x["others_cpu_share"] <= QUIET_SHARE for x in samples) >= repeats:
            break
    kept = sorted(samples, key=lambda x: x["others_cpu_share"])[:repeats]

    def median(key: str) -> float | None:
        values = [x[key] for x in kept if x[key] is not None]
        return statistics.median(values) if values else None

    return {"decode_ms_per_token": median("decode_ms_per_token"), "ask_ms_per_token": median("ask_ms_per_token"),
            "ask_s": median("ask_s"), "first_piece_s": median("first_piece_s"),
            "answer_tokens": [x["answer_tokens"] for x in kept],
            "others_cpu_share": [round(x["others_cpu_share"], 3) for x in kept], "attempts": len(samples),
            "answer": kept[0]["answer"], "stream_unchanged": s.n_tokens == mark}


def measure_decode_steps(s, model, steps: int, repeats: int) -> dict:
    """Time per answer token as llama.cpp's is timed: after the question, `steps` single-token steps whose
    tokens are forced (a trained model's own answer may end after a token or two), rolled back after each
    run; median of `repeats` runs after an untimed one, disturbed runs run again as in text_speed.py."""
    from omnimem_cpp import chat

    from .text_speed import _timed_rates

    mark = s.n_tokens
    question = model.tokenize(chat.user_turn(QUESTION), special=True)
    answer = np.resize(np.asarray(question, dtype=np.int32), steps)

    def reset():
        s.rollback(mark)
        s.feed_tokens(question)

    def run():
        for i in range(steps):
            s.feed_tokens(answer[i:i + 1])

    reset()
    run()
    timing = _timed_rates(repeats, steps, reset, run)
    s.rollback(mark)
    return decode_steps_record(timing, steps)


def decode_steps_record(timing: dict, steps: int) -> dict:
    """A checkpoint's answer-token timing (text_speed's _timed_rates output), as both engines report it."""
    return {"decode_ms_per_token": 1e3 / statistics.median(timing["runs"]), "steps": steps,
            "others_cpu_share": timing["others_cpu_share"]}


# ----------------------------------------------------------------------------------------- the child


def _layer_rows(stats) -> list[dict]:
    return [{**layer.rows, "budget": list(layer.budget) if layer.budget else None, "capacity": layer.capacity,
             "kv_bytes": layer.kv_bytes, "compactions": layer.compactions} for layer in stats.layers]


def _run_policy(conn, policy: str, cfg: dict) -> None:
    import omnimem_cpp as om
    from omnimem_cpp import chat

    model = om.Model(cfg["model"], mmproj=cfg["mmproj"], n_threads=cfg["threads"], device=cfg["device"])
    media = SyntheticMedia(cfg["seed"], *cfg["frame"])
    max_tokens = cfg["max_tokens"]

    # Warm-up on a throwaway stream (threads started, weights paged in, first graphs allocated); it also
    # measures how many tokens a chunk becomes and the bytes of a row, which size a `full` stream.
    with model.stream(policy="full", n_ctx=PROBE_N_CTX) as probe:
        counts = []
        for i in range(3):
            frames, pcm = media.chunk(i)
            probe.feed(video=frames, audio=pcm, fps=FPS)
            counts.append(probe.n_tokens)
        probe.ask(QUESTION, max_tokens=4)
        row_bytes = probe.stats().kv_bytes_allocated / PROBE_N_CTX   # all layers
    open_tokens, chunk_tokens = counts[0], counts[2] - counts[1]
    question_tokens = len(model.tokenize(chat.user_turn(QUESTION), special=True))

    def rows_needed(n_chunks: int) -> int:
        # the chunk still pending, the block's closing tokens, the question and its answer come on top
        return open_tokens + n_chunks * chunk_tokens + 2 + question_tokens + max_tokens + 8

    def full_bytes(rows: int) -> int:
        return int(rows * row_bytes + rows * chunk_tokens * MASK_BYTES)

    targets = [max(1, round(m * 60 / CHUNK_S)) for m in cfg["minutes"]]
    fit_chunks = targets[-1]
    options: dict = {"n_batch": cfg["n_batch"]}
    setup = {"chunk_tokens": chunk_tokens, "open_tokens": open_tokens, "question_tokens": question_tokens,
             "row_bytes_all_layers": row_bytes, "n_layer": model.info.n_layer, "n_embd": model.info.n_embd,
             "n_params": model.info.n_params, "device": model.info.device}
    if policy == "full":
        fitting = [c for c in targets if full_bytes(rows_needed(c)) <= cfg["full_max_bytes"]]
        fit_chunks = fitting[-1] if fitting else 0
        options["n_ctx"] = rows_needed(fit_chunks or targets[0])
        setup["n_ctx"] = options["n_ctx"]
        setup["estimated_peak_bytes"] = {str(m): full_bytes(rows_needed(c)) for m, c in zip(cfg["minutes"], targets)}
    else:
        options["budget"] = cfg["budget"]

    def stop_note(minute: float, n_chunks: int) -> str:
        rows = rows_needed(n_chunks)
        return (f"not run: minute {minute:g} needs n_ctx={rows:,} rows, an estimated {_size(full_bytes(rows))} "
                f"(K/V {_size(rows * row_bytes)} + a chunk's attention mask "
                f"{_size(rows * chunk_tokens * MASK_BYTES)}), "
                f"over the --full-max-gib limit of {_size(cfg['full_max_bytes'])}")

    if fit_chunks == 0:
        conn.send(("setup", setup))
        conn.send(("stopped", {"minute": cfg["minutes"][0], "message": stop_note(cfg["minutes"][0], targets[0])}))
        return

    setup.update({f"before_stream_{k}": v for k, v in _rss().items()})
    s = model.stream(policy=policy, **options)
    stats = s.stats()
    setup.update({"kv_bytes_allocated": stats.kv_bytes_allocated, "layers": _layer_rows(stats),
                  **{f"after_open_{k}": v for k, v in _rss().items()}})
    conn.send(("setup", setup))

    fed, feed_s, make_s = 0, 0.0, 0.0
    asked = {"ingest": 0.0, "score": 0.0, "compact": 0.0}   # what the asks added to the runtime's timers
    previous = {"ingest": 0.0, "score": 0.0, "compact": 0.0, "minute": 0.0, "feed_s": 0.0}
    t_start = last_log = time.monotonic()
    for minute, target in zip(cfg["minutes"], targets):
        if target > fit_chunks:
            conn.send(("stopped", {"minute": minute, "message": stop_note(minute, target)}))
            return
        busy0, own0, t_interval = busy_cpu_s(), own_cpu_s(), time.perf_counter()
        try:
            while fed < target:
                t0 = time.perf_counter()
                frames, pcm = media.chunk(fed)
                t1 = time.perf_counter()
                s.feed(video=frames, audio=pcm, fps=FPS)
                feed_s += time.perf_counter() - t1
                make_s += t1 - t0
                fed += 1
                if time.monotonic() - last_log > PROGRESS_S:
                    last_log = time.monotonic()
                    conn.send(("progress", {"minute": fed * CHUNK_S / 60, "n_tokens": s.n_tokens,
                                            "wall_s": last_log - t_start}))
        except om.OmnimemError as e:   # ContextFullError, BackendError: reported, the run ends here
            conn.send(("stopped", {"minute": minute, "message": f"{type(e).__name__} after {fed * CHUNK_S / 60:.1f} "
                                                                  f"min of media: {e}"}))
            return
        interval_s = time.perf_counter() - t_interval
        others = _others_share(busy0, own0, interval_s)
        st = s.stats()
        memory = _rss()
        ingest = st.ingest_seconds - asked["ingest"]
        score = st.score_seconds - asked["score"]
        compact = st.compact_seconds - asked["compact"]
        d_ingest = ingest - previous["ingest"]
        d_bound = (score - previous["score"]) + (compact - previous["compact"])
        d_minutes = minute - previous["minute"]
        record = {
            "minute": minute, "chunks": fed, "media_s": fed * CHUNK_S, "n_tokens": st.n_tokens,
            "kv_bytes": st.kv_bytes, "kv_bytes_allocated": st.kv_bytes_allocated, **memory,
            "rows": st.rows, "rows_per_layer": sum(st.rows.values()) / max(1, len(st.layers)),
            "layers": _layer_rows(st), "compactions": st.compactions,
            "ingest_s": ingest, "score_s": score, "compact_s": compact,
            "bound_share": (score + compact) / ingest if ingest > 0 else None,
            "interval_bound_share": d_bound / d_ingest if d_ingest > 0 else None,
            "feed_wall_s": feed_s, "media_make_s": make_s,
            "interval_feed_s_per_media_s": (feed_s - previous["feed_s"]) / (d_minutes * 60) if d_minutes > 0 else None,
            "interval_others_cpu_share": round(others, 3),
        }
        try:
            record["ask"] = measure_asks(s, max_tokens, cfg["repeats"], cfg["max_attempts"])
            record["decode_steps"] = measure_decode_steps(s, model, max_tokens, cfg["repeats"])
        except om.OmnimemError as e:
            record["ask"] = {"status": "error", "message": f"{type(e).__name__}: {e}"}
        after = s.stats()
        asked["ingest"] += after.ingest_seconds - st.ingest_seconds
        asked["score"] += after.score_seconds - st.score_seconds
        asked["compact"] += after.compact_seconds - st.compact_seconds
        record["asks_ingest_s"] = asked["ingest"]
        previous = {"ingest": ingest, "score": score, "compact": compact, "minute": minute, "feed_s": feed_s}
        conn.send(("checkpoint", record))
        if "status" in record["ask"]:
            return
    s.close()
    model.close()


def _run_llama_cpp(conn, cfg: dict) -> None:
    """llama.cpp on the same text model without compression: its context holds every token of the stream, so
    at each checkpoint in cfg["stream_tokens"] ({minute: tokens}, what the stream fed) it has that many tokens
    of K/V, and its time per answer token is measured there. Its context is filled with random token ids in
    batches (the cost of decoding at a context does not depend on what the tokens are); checkpoints beyond
    cfg["llama_max_tokens"] are not run, since filling them costs the square of their length."""
    from .text_speed import LlamaCppEngine, _timed_rates

    wanted = sorted((int(n), float(m)) for m, n in cfg["stream_tokens"].items())
    runnable = [(n, m) for n, m in wanted if n <= cfg["llama_max_tokens"]]
    steps = cfg["max_tokens"]
    engine = LlamaCppEngine(Path(cfg["model"]), "default", cfg["threads"], cfg["n_batch"],
                            n_ctx=(runnable[-1][0] if runnable else 0) + steps + 16)
    per_token = engine.kv_bytes_per_token()
    conn.send(("setup", {"kv_bytes_per_token": per_token, "n_ctx": engine.L.llama_n_ctx(engine.ctx)}))
    rng = np.random.default_rng(cfg["seed"])
    for n_tokens, minute in wanted:
        if n_tokens > cfg["llama_max_tokens"]:
            conn.send(("stopped", {"minute": minute, "n_tokens": n_tokens, "kv_bytes": n_tokens * per_token,
                                   "message": f"minute {minute:g} ({n_tokens:,} tokens) not run: over "
                                              f"{cfg['llama_max_tokens']:,} tokens of context"}))
            return
        while engine.n_past < n_tokens:
            engine.feed(rng.integers(0, LLAMA_TOKEN_IDS, size=min(cfg["n_batch"], n_tokens - engine.n_past),
                                     dtype=np.int32))
        answer = rng.integers(0, LLAMA_TOKEN_IDS, size=steps, dtype=np.int32)

        def decode():
            for i in range(steps):
                engine.feed(answer[i:i + 1])

        timing = _timed_rates(cfg["repeats"], steps, lambda: engine.reset(n_tokens), decode)
        conn.send(("checkpoint", {"minute": minute, "n_tokens": n_tokens, "kv_bytes": n_tokens * per_token,
                                  "kv_bytes_allocated": engine.L.llama_n_ctx(engine.ctx) * per_token, **_rss(),
                                  "decode_steps": decode_steps_record(timing, steps)}))
        engine.reset(n_tokens)


def _child(conn, policy: str, cfg: dict) -> None:
    try:
        if policy == "llama.cpp":
            _run_llama_cpp(conn, cfg)
            return
        _run_policy(conn, policy, cfg)
    except ImportError as e:
        conn.send(("fatal", {"status": "unavailable", "message": f"{type(e).__name__}: {e}"}))
    except Exception as e:
        conn.send(("fatal", {"status": "error", "message": f"{type(e).__name__}: {e}"}))


# ------------------------------------------------------------------------------------------ parent


def run_child(policy: str, cfg: dict) -> dict:
    """One policy's setup, checkpoints and, if it stopped early, why."""
    ctx = multiprocessing.get_context("spawn")   # a fresh interpreter: its RSS is this policy's alone
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, policy, cfg), daemon=True)
    proc.start()
    send.close()
    out: dict = {"policy": policy, "setup": {}, "checkpoints": [], "stopped": None}
    deadline = time.monotonic() + cfg["timeout_s"]
    t0 = time.monotonic()
    while True:
        if not recv.poll(max(0.0, deadline - time.monotonic())):
            proc.kill()
            out["stopped"] = {"status": "timeout", "message": f"killed after {cfg['timeout_s'] / 60:.0f} min "
                                                              "(--timeout-min)"}
            break
        try:
            kind, payload = recv.recv()
        except EOFError:
            break
        if kind == "setup":
            out["setup"] = payload
        elif kind == "progress":
            log(f"  {policy}: {payload['minute']:.1f} min of media, {payload['n_tokens']:,} tokens fed "
                 f"({time.monotonic() - t0:.0f} s)")
        elif kind == "checkpoint":
            out["checkpoints"].append(payload)
            ask = payload.get("decode_steps") or payload["ask"]
            log(f"  {policy} minute {payload['minute']:g}: KV {_size(payload['kv_bytes'])} "
                 f"(allocated {_size(payload['kv_bytes_allocated'])}), RSS {_size(payload['rss_bytes'])}, "
                 f"decode {_ms(ask.get('decode_ms_per_token'))} ms/token ({time.monotonic() - t0:.0f} s)")
        else:   # "stopped" or "fatal"
            out["stopped"] = payload
            log(f"  {policy}: stopped — {payload.get('message', payload.get('status'))}")
    proc.join()
    if out["stopped"] is None and proc.exitcode:
        why = f"crash ({signal.Signals(-proc.exitcode).name})" if proc.exitcode < 0 else f"exit code {proc.exitcode}"
        out["stopped"] = {"status": why, "message": why}
    return out


def _size(n: float | None) -> str:
    if n is None:
        return "–"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def table(results: dict) -> str:
    header = ["policy", "minute", "tokens fed", "rows/layer (text+visual+audio)", "KV live", "KV allocated",
              "RSS (peak)", "feed s per media s", "score+compact / ingest", "decode ms/token", "ask ms/token",
              "answer tokens"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for policy, r in results.items():
        n_layer = max(1, r["setup"].get("n_layer", 1))
        for c in r["checkpoints"]:
            rows = c["rows"]
            split = "+".join(f"{rows[m] / n_layer:.0f}" for m in ("text", "visual", "audio"))
            ask = c["ask"]
            lines.append(
                f"| {policy} | {c['minute']:g} | {c['n_tokens']:,} | {c['rows_per_layer']:,.0f} ({split}) | "
                f"{_size(c['kv_bytes'])} | {_size(c['kv_bytes_allocated'])} | {_size(c['rss_bytes'])} "
                f"({_size(c['rss_peak_bytes'])}) | "
                f"{c['interval_feed_s_per_media_s']:.3f} | {_pct(c['bound_share'])} | "
                f"{_ms(ask.get('decode_ms_per_token'))} | {_ms(ask.get('ask_ms_per_token'))} | "
                f"{','.join(map(str, ask.get('answer_tokens', []))) or ask.get('message', '–')} |")
        if r["stopped"]:
            lines.append(f"| {policy} | | {r['stopped'].get('message', r['stopped'].get('status'))} |"
                         + " |" * (len(header) - 3))
    return "\n".join(lines)


def _change(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or a == 0 else b / a - 1


def targets(results: dict) -> tuple[dict, list[str]]:
    """The three targets for every bounded policy, and how `full` compares at the last shared checkpoint."""
    found, lines = {}, []
    for policy, r in results.items():
        cps = r["checkpoints"]
        if policy == "full" or len(cps) < 1:
            continue
        first, last = cps[0], cps[-1]
        kv = [c["kv_bytes"] for c in cps]
        kv_growth = max(kv) / min(kv) - 1 if min(kv) > 0 else None
        rss_growth = _change(first["rss_bytes"], last["rss_bytes"])
        alloc_flat = len({c["kv_bytes_allocated"] for c in cps}) == 1
        time_change = _change(first["ask"].get("decode_ms_per_token"), last["ask"].get("decode_ms_per_token"))
        share = last["bound_share"]
        t = {
            "memory_flat": {"kv_bytes": kv, "kv_bytes_allocated_constant": alloc_flat, "kv_spread": kv_growth,
                            "rss_first": first["rss_bytes"], "rss_last": last["rss_bytes"], "rss_change": rss_growth,
                            "met": alloc_flat and kv_growth is not None and kv_growth <= 0.01
                            and rss_growth is not None and rss_growth <= 0.05},
            "answer_token_time": {"first_ms": first["ask"].get("decode_ms_per_token"),
                                  "last_ms": last["ask"].get("decode_ms_per_token"), "change": time_change,
                                  "met": time_change is not None and abs(time_change) <= 0.10},
            "bounding_share": {"share": share, "met": share is not None and share <= 0.05},
        }
        found[policy] = t
        span = f"minute {first['minute']:g} → {last['minute']:g}"
        mark = {True: "met", False: "NOT met"}
        m = t["memory_flat"]
        lines.append(f"{policy}, memory flat under the budget ({span}): KV live {_size(min(kv))}–{_size(max(kv))} "
                     f"(spread {_pct(kv_growth)}), allocated {'constant' if alloc_flat else 'CHANGING'} at "
                     f"{_size(last['kv_bytes_allocated'])}; RSS {_size(first['rss_bytes'])} → "
                     f"{_size(last['rss_bytes'])} ({_pct(rss_growth)}) — {mark[m['met']]} "
                     "(KV spread ≤ 1%, RSS growth ≤ 5%)")
        a = t["answer_token_time"]
        lines.append(f"{policy}, decode time per answer token ({span}): {_ms(a['first_ms'])} → "
                     f"{_ms(a['last_ms'])} ms ({_pct(time_change)}) — {mark[a['met']]} (within 10%)")
        lines.append(f"{policy}, scoring + compaction share of ingest (minutes 0–{last['minute']:g}): "
                     f"{_pct(share)} (score {last['score_s']:.2f} s + compaction {last['compact_s']:.2f} s of "
                     f"{last['ingest_s']:.1f} s) — {mark[t['bounding_share']['met']]} (≤ 5%)")

    full = {c["minute"]: c for c in results.get("full", {}).get("checkpoints", [])}
    for policy, r in results.items():
        shared = [c for c in r["checkpoints"] if policy != "full" and c["minute"] in full]
        if shared:
            ours, theirs = shared[-1], full[shared[-1]["minute"]]
            ratio = theirs["kv_bytes"] / ours["kv_bytes"] if ours["kv_bytes"] else float("nan")
            lines.append(f"minute {ours['minute']:g}, full ÷ {policy}: KV live {ratio:.0f}× "
                         f"({_size(theirs['kv_bytes'])} vs {_size(ours['kv_bytes'])}), RSS "
                         f"{_size(theirs['rss_bytes'])} vs {_size(ours['rss_bytes'])}, decode "
                         f"{_ms(theirs['ask'].get('decode_ms_per_token'))} vs "
                         f"{_ms(ours['ask'].get('decode_ms_per_token'))} ms/token")
    return found, lines


def plot(results: dict, path: Path, title: str) -> str | None:
    """KV bytes, RSS and decode time per answer token against minutes of media. Returns why not, if not."""
    try:
        import matplotlib

        matplotlib.use("Agg")   # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return "the plot needs matplotlib: pip install matplotlib"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for policy, r in results.items():
        cps = r["checkpoints"]
        if not cps:
            continue
        x = [c["minute"] for c in cps]
        line, = axes[0].plot(x, [c["kv_bytes"] / 2**20 for c in cps], marker="o", label=f"{policy} live")
        axes[0].plot(x, [c["kv_bytes_allocated"] / 2**20 for c in cps], ls="--", color=line.get_color(),
                     label=f"{policy} allocated")
        axes[1].plot(x, [c["rss_bytes"] / 2**20 for c in cps], marker="o", color=line.get_color(), label=policy)
        axes[1].plot(x, [c["rss_peak_bytes"] / 2**20 for c in cps], ls=":", color=line.get_color(),
                     label=f"{policy} peak")
        y = [c["ask"].get("decode_ms_per_token") for c in cps]
        axes[2].plot([a for a, b in zip(x, y) if b is not None], [b for b in y if b is not None], marker="o",
                     color=line.get_color(), label=policy)
    for ax, label in zip(axes, ("K/V memory (MiB)", "process RSS (MiB)", "decode time per answer token (ms)")):
        ax.set_xlabel("minutes of media")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in (axes[0], axes[2]):
        ax.set_yscale("log")   # full and a budget differ by orders of magnitude
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None




def _minutes(text: str) -> list[float]:
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated minutes, e.g. 1,5,20,60, got {text!r}") from None
    if not values or values[0] <= 0:
        raise argparse.ArgumentTypeError("checkpoints must be positive minutes")
    return values


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=_minutes, help=f"checkpoints in minutes of media (default {DEFAULT_MINUTES})")
    ap.add_argument("--policies", default="full,omnimem", help="comma-separated stream policies")
    ap.add_argument("--budget", default="256", help="budget of the bounded policies: rows per layer or bytes (\"2MB\")")
    ap.add_argument("--model", type=Path, help="text-model GGUF (default: the demo model inside the package)")
    ap.add_argument("--mmproj", type=Path, help="its projector GGUF (needed with --model)")
    ap.add_argument("--device", default="cpu", help="\"cpu\", \"auto\" or a ggml device name")
    ap.add_argument("--threads", type=int, help="CPU threads (default: 1 for the demo model, else 2)")
    ap.add_argument("--frame", type=frame_size, default=(224, 168), help="video frame size WIDTHxHEIGHT")
    ap.add_argument("--n-batch", type=int, default=512, help="the streams' n_batch")
    ap.add_argument("--max-tokens", type=int, default=32, help="answer tokens per ask")
    ap.add_argument("--repeats", type=int, default=3, help="timed asks per checkpoint")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic media")
    ap.add_argument("--full-max-gib", type=float, help="memory a `full` stream may take (default: 80%% of available)")
    ap.add_argument("--timeout-min", type=float, default=360, help="per policy, in minutes of wall time")
    ap.add_argument("--json", type=Path, help="write every number and the machine description here")
    ap.add_argument("--png", type=Path, help="write a plot here (needs matplotlib)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke test: checkpoints {QUICK_MINUTES} only, one ask per checkpoint taken as it comes")
    args = ap.parse_args(argv)

    import omnimem_cpp as om
    from omnimem_cpp.demo import DEMO_MODEL, DEMO_PROJECTOR

    if args.model is None and args.mmproj is not None:
        ap.error("--mmproj goes with --model")
    if args.model is not None and args.mmproj is None:
        ap.error("streaming media needs the projector: give --mmproj with --model")
    demo = args.model is None
    model_path, mmproj_path = (DEMO_MODEL, DEMO_PROJECTOR) if demo else (args.model, args.mmproj)
    minutes = args.minutes or _minutes(QUICK_MINUTES if args.quick else DEFAULT_MINUTES)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = [p for p in policies if p not in om.POLICIES]
    if unknown or not policies:
        ap.error(f"unknown policies {unknown}; known: {', '.join(om.POLICIES)}")
    threads = args.threads or (1 if demo else 2)
    if args.quick:
        args.repeats = 1
    full_max = int(args.full_max_gib * 2**30) if args.full_max_gib else int(0.8 * _available_bytes())
    cfg = {"model": str(model_path), "mmproj": str(mmproj_path), "device": args.device, "threads": threads,
           "frame": list(args.frame), "n_batch": args.n_batch, "max_tokens": args.max_tokens,
           "repeats": args.repeats, "max_attempts": 1 if args.quick else MAX_ATTEMPTS, "seed": args.seed,
           "budget": args.budget, "minutes": minutes,
           "full_max_bytes": full_max, "timeout_s": args.timeout_min * 60}

    machine = machine_description()   # before the runs: a missing package shows at once, not after hours
    t_start, busy_start, own_start = time.monotonic(), busy_cpu_s(), own_cpu_s()
    results = {}
    for policy in policies:
        log(f"{policy} ...")
        results[policy] = run_child(policy, cfg)
    wall_s = time.monotonic() - t_start
    others_cpu_s = max(0.0, (busy_cpu_s() - busy_start) - (own_cpu_s() - own_start))

    setup = next((r["setup"] for r in results.values() if r["setup"]), {})
    width, height = args.frame
    title = (f"{Path(model_path).name} + {Path(mmproj_path).name}, {threads} thread(s), {args.device}; "
             f"{width}×{height} frames at {FPS:g} fps + 16 kHz audio in {CHUNK_S:g}-s chunks "
             f"({setup.get('chunk_tokens', '?')} tokens each); budget {args.budget} rows/layer")
    print(f"\n{title}; {args.max_tokens}-token answers, medians of {args.repeats}")
    print(table(results))
    found, lines = targets(results)
    if lines:
        print("\nTargets (reported, not asserted):")
        for line in lines:
            print(f"  {line}")
    print(f"\n{wall_s:.0f} s; other processes used {others_cpu_s:.0f} CPU-s meanwhile "
          f"({100 * others_cpu_s / (wall_s * os.cpu_count()):.0f}% of this machine)")

    if args.png:
        why_not = plot(results, args.png, title)
        print(why_not or f"plot: {args.png}")
    if args.json:
        write_report(args.json, machine=machine,
                     config={**{k: v for k, v in cfg.items() if k not in ("model", "mmproj")},
                             "model": Path(model_path).name, "projector": Path(mmproj_path).name,
                             "policies": policies, "chunk_seconds": CHUNK_S, "fps": FPS, "sample_rate": SAMPLE_RATE,
                             "question": QUESTION},
                     results=results, targets=found, wall_s=wall_s, others_cpu_s=others_cpu_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
