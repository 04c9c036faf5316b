"""Ingest speed of one 2-second audio-visual chunk at Qwen2.5-Omni-3B dimensions, stage by stage, with
llama.cpp's libmtmd beside omnimem.cpp on the same projector file.

    python -m benchmarks.ingest_speed [--threads 2] [--text-type q8_0] [--frame 336x308] [--repeats 3]
                                      [--json out.json] [--workdir DIR] [--quick]

The chunk is what `om.media.open` yields for 2 s of video with sound: 4 frames (2 fps) of --frame pixels
(WIDTHxHEIGHT) and 32,000 samples of 16 kHz audio. Stages, timed separately in omnimem.cpp:
  preprocessing  om.media.image_patches (smart_resize, bicubic, normalise, patches) of the 4 frames, and
                 om.media.log_mel of the audio;
  ViT            Stream.encode_image of the chunk's 2 temporal patches (frame pairs);
  audio tower    Stream.encode_audio of the chunk's 200 mel frames;
  LLM prefill    Stream.feed_embeddings of the chunk's visual and audio embeddings at their TMRoPE positions,
                 after the block's two opening tokens;
  end to end     Stream.feed(video=..., audio=...) then close_media(): all of the above in the runtime's own
                 path, opening and closing tokens included (not with --quick);
  bounded        the chunk twice into an omnimem stream whose budget (128 media rows per layer) it overflows,
                 so that scoring and compaction run (on the first, once the second arrives); the stream's
                 timers give their share of its ingest time (not with --quick).
libmtmd (through llama-cpp-python's mtmd bindings) runs the same towers from the same file: the ViT on the
chunk's frames (4 mergeable bitmaps: 2 frame pairs) and on one still frame, the audio tower on the chunk's
audio and (not with --quick) on a 30-s clip, with its default settings (flash attention on where the backend
has it); its preprocessing is timed as mtmd_tokenize. libmtmd pads any audio to whole 30-s windows, so its cost
for a 2-s chunk is that of 30 s; the 30-s clip compares equal work. It needs a text model only for its width and
vocabulary, so the text GGUF is loaded vocabulary-only there.

Weights are random (benchmarks/random_gguf.py; cached in --workdir): the projector's matrices are F16, the text
model's have --text-type. Figures are medians over --repeats rounds; in each round each engine runs every stage
once, after an untimed run of the same input, and the engines alternate rounds, so that the machine's drift
over minutes falls on both alike. A run during which other processes took more than a tenth of the machine is
run again, as in text_speed.py. --quick is one round, each stage timed as it comes after a warm-up on small
inputs only. Each engine runs in its own child process, so they share no threads, and a crash shows in the
table instead of ending the benchmark.
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import os
import resource
import signal
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from .random_gguf import QWEN25_OMNI_3B, QWEN25_OMNI_3B_PROJECTOR, WEIGHT_TYPES, cached_projector_gguf, cached_text_gguf
from .text_speed import (
    DEFAULT_WORKDIR,
    MAX_ATTEMPTS,
    QUIET_SHARE,
    busy_cpu_s,
    frame_size,
    log,
    machine_description,
    own_cpu_s,
    write_report,
)

CHUNK_SECONDS = 2.0
FPS = 2.0
SAMPLE_RATE = 16000
AUDIO_CLIP_SECONDS = 30.0   # libmtmd's audio window: the clip both engines encode as equal work
TOKENS_PER_SECOND = 25      # TMRoPE's temporal resolution; also audio tokens per second
MEL_FRAMES_PER_SECOND = 100
N_CTX = 1024
N_BATCH = 512               # above the chunk's token count, so the prefill is one graph
BOUNDED_BUDGET = 128        # media rows per layer: a chunk overflows it, so its ingest scores and compacts
BOUNDED_CHUNKS = 2          # the first is compacted once the second arrives
DEFAULT_TEXT_TYPE = "q8_0"
DEFAULT_FRAME = (336, 308)  # WIDTHxHEIGHT, sides multiples of 28 (two 14-px patches merged)
PREPROCESS_LOOPS = 20       # preprocessing takes milliseconds: time a loop of calls
SMALL_IMAGE = (56, 56)      # warm-up input: pages the weights in and starts the threads, costs little
SMALL_AUDIO_S = 0.5
CHILD_TIMEOUT_S = 3600


# ----------------------------------------------------------------------------------------- the inputs


def make_media(cfg: dict) -> dict:
    """The chunk (4 RGB frames, 2 s of audio), a 30-s clip and small warm-up inputs, the same in every child.
    Noise: the encoders' speed does not depend on the content."""
    rng = np.random.default_rng(cfg["seed"])
    width, height = cfg["frame"]
    n_frames = int(CHUNK_SECONDS * FPS)

    def pcm(seconds: float) -> np.ndarray:
        return (0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)

    return {
        "frames": rng.integers(0, 256, size=(n_frames, height, width, 3), dtype=np.uint8),
        "audio": pcm(CHUNK_SECONDS),
        "clip_audio": pcm(AUDIO_CLIP_SECONDS),
        "small_image": rng.integers(0, 256, size=(*SMALL_IMAGE, 3), dtype=np.uint8),
        "small_audio": pcm(SMALL_AUDIO_S),
    }


def chunk_positions(start: int, grid: tuple[int, int, int], n_audio: int, merge: int = 2) -> np.ndarray:
    """TMRoPE positions [n, 3] of a block's first chunk, visual tokens then audio tokens, as transformers'
    get_rope_index gives them: frame pair g at time start + g * (2 / fps) * 25, its merged cell (i, j) at
    (start + i, start + j); audio token k at start + k on all three axes."""
    t, h, w = grid
    rows = []
    for g in range(t):
        time_pos = start + int(g * (2 / FPS) * TOKENS_PER_SECOND)
        rows += [(time_pos, start + i, start + j) for i in range(h // merge) for j in range(w // merge)]
    rows += [(start + k,) * 3 for k in range(n_audio)]
    return np.array(rows, dtype=np.int32)


# ------------------------------------------------------------------------------------- measuring


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def _timed_seconds(repeats: int, max_attempts: int, reset, run) -> dict:
    """Seconds of `repeats` runs, with text_speed.py's policy: ggml's threads wait for each other at every op,
    so a run during which other processes took more than QUIET_SHARE of the machine is run again (up to
    max_attempts times the repeats) and the least disturbed runs are kept."""
    samples = []
    for _ in range(repeats * max_attempts):
        reset()
        busy0, own0, t0 = busy_cpu_s(), own_cpu_s(), time.perf_counter()
        run()
        dt = time.perf_counter() - t0
        others = max(0.0, (busy_cpu_s() - busy0) - (own_cpu_s() - own0)) / (dt * os.cpu_count())
        samples.append((others, dt))
        if sum(o <= QUIET_SHARE for o, _ in samples) >= repeats:
            break
    kept = sorted(samples, key=lambda sample: sample[0])[:repeats]
    return {"seconds": [dt for _, dt in kept], "others_cpu_share": [round(o, 3) for o, _ in kept],
            "attempts": len(samples)}


class Reporter:
    """Times stages in a child process and sends each result to the parent as soon as it exists, so that
    results measured before a crash are kept."""

    def __init__(self, conn, cfg: dict):
        self.conn, self.cfg = conn, cfg

    def measure(self, key: str, run, reset=lambda: None, loops: int = 1, **info):
        """Median seconds of one call of `run` over cfg["repeats"] runs; returns run()'s last result.
        Without --quick, an untimed call of the same input comes first (graph allocation, first touches), and
        disturbed runs are run again; --quick takes the first run as it is."""
        result = None

        def timed():
            nonlocal result
            for _ in range(loops):
                result = run()

        try:
            if self.cfg["warmup"]:
                reset()
                timed()
            timing = _timed_seconds(self.cfg["repeats"], 1 if self.cfg["quick"] else MAX_ATTEMPTS, reset, timed)
        except Exception as e:  # reported in the table; the next stage may still run
            self.conn.send((key, {"status": "error", "message": f"{type(e).__name__}: {e}"}))
            return None
        seconds = [s / loops for s in timing.pop("seconds")]
        self.conn.send((key, {"seconds": seconds, "median_s": statistics.median(seconds), **timing,
                              "peak_rss_gib": round(_peak_rss_gib(), 2), **info}))
        return result

    def skip(self, key: str, why: str) -> None:
        self.conn.send((key, {"status": why}))


def _omnimem_child(rep: Reporter, cfg: dict) -> None:
    import omnimem_cpp as om

    media = make_media(cfg)
    frames, audio = media["frames"], media["audio"]
    model = om.Model(cfg["text_path"], mmproj=cfg["mmproj_path"], n_threads=cfg["threads"], device="cpu")
    stream = model.stream(n_ctx=N_CTX, n_batch=N_BATCH, kv_type="f16")

    def video_patches():
        return om.media.image_patches(frames, **om.media.VIDEO_PIXELS)

    rep.measure("preprocess_video", video_patches, loops=PREPROCESS_LOOPS)
    rep.measure("preprocess_audio", lambda: om.media.log_mel(audio), loops=PREPROCESS_LOOPS)
    patches, grid = video_patches()
    mel = om.media.log_mel(audio)

    # Untimed small inputs: every weight paged in from the mapped files, threads started.
    stream.encode_image(*om.media.image_patches(media["small_image"]))
    stream.encode_audio(om.media.log_mel(media["small_audio"]))

    n_patches = len(patches)
    visual = rep.measure("vit_chunk", lambda: stream.encode_image(patches, grid), patches=n_patches, grid=list(grid))
    sound = rep.measure("audio_chunk", lambda: stream.encode_audio(mel), mel_frames=mel.shape[1])
    if visual is not None and sound is not None:
        rep.conn.send(("tokens", {"visual": len(visual), "audio": len(sound)}))
        # The chunk as the first of a block: after <|vision_bos|><|audio_bos|>, its media from the next position.
        stream.feed_tokens(model.tokenize("<|vision_bos|><|audio_bos|>", special=True))
        opened = stream.n_tokens
        embeddings = np.concatenate([visual, sound])
        positions = chunk_positions(stream.next_position, grid, len(sound))
        modality = ["visual"] * len(visual) + ["audio"] * len(sound)
        stream.feed_embeddings(embeddings[:8], positions[:8], modality[:8])  # warm-up: pages in the LLM weights
        rep.measure("prefill_chunk", lambda: stream.feed_embeddings(embeddings, positions, modality),
                    reset=lambda: stream.rollback(opened), tokens=len(embeddings))
        stream.rollback(0)
    else:
        rep.skip("prefill_chunk", "no embeddings (an encoder failed)")

    if cfg["quick"]:
        rep.skip("end_to_end", "not with --quick")
        rep.skip("bounded_chunk", "not with --quick")
    else:
        def feed_chunk():
            stream.feed(video=frames, audio=audio, fps=FPS, sample_rate=SAMPLE_RATE)
            stream.close_media()

        rep.measure("end_to_end", feed_chunk, reset=lambda: stream.rollback(0))
        stream.rollback(0)

        # The chunk twice into a stream whose budget it overflows, so that scoring and compaction run (after a
        # chunk that the next one's arrival completes; the one completed by close_media is not compacted); the
        # stream's own timers split its ingest time. A fresh stream each run: compaction cannot be rolled back.
        bounded = {}

        def fresh_bounded_stream():
            if "stream" in bounded:
                bounded["stream"].close()
            bounded["stream"] = model.stream(policy="omnimem", budget=BOUNDED_BUDGET, n_batch=N_BATCH, kv_type="f16")

        def feed_bounded():
            for _ in range(BOUNDED_CHUNKS):
                bounded["stream"].feed(video=frames, audio=audio, fps=FPS, sample_rate=SAMPLE_RATE)
            bounded["stream"].close_media()
            return bounded["stream"].stats()

        st = rep.measure("bounded_chunk", feed_bounded, reset=fresh_bounded_stream, budget=BOUNDED_BUDGET)
        if st is not None:
            rep.conn.send(("bounding", {"ingest_s": st.ingest_seconds, "score_s": st.score_seconds,
                                        "compact_s": st.compact_seconds, "compactions": st.compactions,
                                        "share": (st.score_seconds + st.compact_seconds) / st.ingest_seconds}))
        if "stream" in bounded:
            bounded["stream"].close()

    still, still_grid = om.media.image_patches(frames[0])
    rep.measure("vit_image", lambda: stream.encode_image(still, still_grid), patches=len(still),
                grid=list(still_grid))
    if cfg["quick"]:
        rep.skip("audio_clip", "not with --quick")
    else:
        clip_mel = om.media.log_mel(media["clip_audio"])
        rep.measure("audio_clip", lambda: stream.encode_audio(clip_mel), mel_frames=clip_mel.shape[1])


class _Mtmd:
    """libmtmd through llama-cpp-python's ctypes bindings: one context over the projector file."""

    def __init__(self, cfg: dict):
        import llama_cpp
        from llama_cpp import mtmd_cpp as mt

        self.mt = mt
        self.errors: list[str] = []  # libmtmd's warnings and errors, to say why something failed

        def log(level, text, _user_data):
            if level in (3, 4) and text:  # GGML_LOG_LEVEL_WARN, GGML_LOG_LEVEL_ERROR
                self.errors.append(text.decode(errors="replace").strip())

        self._log_cb = llama_cpp.llama_log_callback(log)  # kept alive as long as the context
        llama_cpp.llama_log_set(self._log_cb, None)
        mt.mtmd_log_set(self._log_cb, None)
        mt.mtmd_helper_log_set(self._log_cb, None)
        llama_cpp.llama_backend_init()
        # libmtmd reads only the text model's width and vocabulary, so its weights need not be loaded.
        mp = llama_cpp.llama_model_default_params()
        mp.vocab_only = True
        self.text_model = llama_cpp.llama_model_load_from_file(cfg["text_path"].encode(), mp)
        if not self.text_model:
            raise RuntimeError(f"llama.cpp could not load {cfg['text_path']}: {self.last_error()}")
        params = mt.mtmd_context_params_default()
        params.use_gpu, params.n_threads, params.print_timings = False, cfg["threads"], False
        params.warmup = False  # its warm-up encodes a 1288x1288 image and 30 s of audio: ours below is smaller
        self.ctx = mt.mtmd_init_from_file(cfg["mmproj_path"].encode(), self.text_model, params)
        if not self.ctx:
            raise RuntimeError(f"libmtmd could not load the projector: {self.last_error()}")
        self.vision, self.audio = mt.mtmd_support_vision(self.ctx), mt.mtmd_support_audio(self.ctx)

    def last_error(self) -> str:
        return self.errors[-1] if self.errors else "no message"

    def image(self, rgb: np.ndarray, mergeable: bool = False):
        height, width, _ = rgb.shape
        bitmap = self.mt.mtmd_bitmap_init(width, height, (ctypes.c_uint8 * rgb.size).from_buffer_copy(rgb.tobytes()))
        self.mt.mtmd_bitmap_set_mergeable(bitmap, mergeable)  # consecutive mergeable frames become one pair
        return bitmap

    def sound(self, pcm: np.ndarray):
        samples = (ctypes.c_float * pcm.size).from_buffer_copy(pcm.tobytes())
        return self.mt.mtmd_bitmap_init_from_audio(pcm.size, samples)

    def tokenize(self, bitmaps: list):
        """libmtmd's preprocessing: the media chunks of a prompt made of one marker per bitmap.
        Returns (chunks handle, [(media chunk, n_tokens)]); free the handle with free()."""
        mt = self.mt
        prompt = mt.mtmd_default_marker() * len(bitmaps)
        text = mt.mtmd_input_text(text=prompt, text_len=len(prompt), add_special=False, parse_special=True)
        chunks = mt.mtmd_input_chunks_init()
        rc = mt.mtmd_tokenize(self.ctx, chunks, ctypes.byref(text), (mt.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps),
                              len(bitmaps))
        if rc != 0:
            mt.mtmd_input_chunks_free(chunks)
            raise RuntimeError(f"mtmd_tokenize returned {rc}: {self.last_error()}")
        parts = [mt.mtmd_input_chunks_get(chunks, i) for i in range(mt.mtmd_input_chunks_size(chunks))]
        media = [(c, mt.mtmd_input_chunk_get_n_tokens(c)) for c in parts
                 if mt.mtmd_input_chunk_get_type(c) != mt.MTMD_INPUT_CHUNK_TYPE_TEXT]
        return chunks, media

    def free(self, chunks) -> None:
        self.mt.mtmd_input_chunks_free(chunks)

    def encode(self, media: list) -> None:
        for chunk, _ in media:
            rc = self.mt.mtmd_encode_chunk(self.ctx, chunk)
            if rc != 0:
                raise RuntimeError(f"mtmd_encode_chunk returned {rc}: {self.last_error()}")


def _libmtmd_child(rep: Reporter, cfg: dict) -> None:
    media = make_media(cfg)
    m = _Mtmd(cfg)
    frames = [m.image(f, mergeable=True) for f in media["frames"]]
    audio, still = m.sound(media["audio"]), m.image(media["frames"][0])

    def tokenize_and_free(bitmaps):
        chunks, _ = m.tokenize(bitmaps)
        m.free(chunks)

    vision_why = None if m.vision else "libmtmd found no vision encoder in the file"
    audio_why = None if m.audio else "libmtmd found no audio encoder in the file"
    for key, bitmaps, why in (("preprocess_video", frames, vision_why), ("preprocess_audio", [audio], audio_why)):
        if why:
            rep.skip(key, why)
        else:
            rep.measure(key, lambda b=bitmaps: tokenize_and_free(b), loops=PREPROCESS_LOOPS)

    def encode_stage(key: str, bitmaps: list, why: str | None) -> None:
        if why:
            rep.skip(key, why)
            return
        try:
            chunks, parts = m.tokenize(bitmaps)
        except RuntimeError as e:
            rep.skip(key, f"error: {e}")
            return
        rep.measure(key, lambda: m.encode(parts), tokens=sum(n for _, n in parts), media_chunks=len(parts))
        m.free(chunks)

    if m.vision:
        small, parts = m.tokenize([m.image(media["small_image"])])
        m.encode(parts)  # warm-up: threads started, compute buffers allocated
        m.free(small)
    encode_stage("vit_chunk", frames, vision_why)
    encode_stage("audio_chunk", [audio], audio_why)
    encode_stage("vit_image", [still], vision_why)
    if cfg["quick"]:
        rep.skip("audio_clip", "not with --quick")
    else:
        encode_stage("audio_clip", [m.sound(media["clip_audio"])], audio_why)
    for key in ("prefill_chunk", "end_to_end"):
        rep.skip(key, "not measured (text prefill: text_speed.py)")
    rep.skip("bounded_chunk", "no bounded memory")


CHILDREN = {"omnimem.cpp": _omnimem_child, "libmtmd": _libmtmd_child}


def _child(conn, engine: str, cfg: dict) -> None:
    rep = Reporter(conn, cfg)
    try:
        CHILDREN[engine](rep, cfg)
    except ImportError as e:
        conn.send(("fatal", {"status": "unavailable", "message": f"{type(e).__name__}: {e}"}))
    except Exception as e:
        conn.send(("fatal", {"status": "error", "message": f"{type(e).__name__}: {e}"}))


# ------------------------------------------------------------------------------------------ parent


STAGES = ["preprocess_video", "preprocess_audio", "vit_chunk", "audio_chunk", "prefill_chunk", "end_to_end",
          "bounded_chunk", "vit_image", "audio_clip"]


def run_child(engine: str, cfg: dict) -> dict:
    """{stage: result} of one engine; stages the child never reported get the reason it stopped."""
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads shared with the other engine
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, engine, cfg), daemon=True)
    proc.start()
    send.close()
    out: dict = {}
    stop = None
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while True:
        if not recv.poll(max(0.0, deadline - time.monotonic())):
            proc.kill()
            stop = {"status": "timeout"}
            break
        try:
            key, payload = recv.recv()
        except EOFError:
            break
        if key == "fatal":
            stop = payload
        else:
            out[key] = payload
        if "median_s" in payload:
            share = max(payload["others_cpu_share"])
            log(f"  {engine} {key}: {payload['median_s']:.3f} s (other processes: up to {100 * share:.0f}%)")
        elif "status" in payload:
            why = payload["status"] + (f" — {payload['message']}" if "message" in payload else "")
            log(f"  {engine} {key}: {why}")
    proc.join()
    if stop is None and proc.exitcode:
        stop = {"status": f"crash ({signal.Signals(-proc.exitcode).name})" if proc.exitcode < 0
                else f"exit code {proc.exitcode}"}
    for key in STAGES:
        out.setdefault(key, stop or {"status": "not run"})
    return out


def merge_rounds(runs: list[dict]) -> dict:
    """{stage: result} over rounds: the timed runs of every round together; a stage no round timed keeps the
    first round's reason. What is not a stage (the chunk's token counts) comes from the last round."""
    out = {key: value for key, value in runs[-1].items() if key not in STAGES}
    for key in STAGES:
        timed = [run[key] for run in runs if "median_s" in run[key]]
        if not timed:
            out[key] = runs[0][key]
            continue
        seconds = [x for t in timed for x in t["seconds"]]
        out[key] = {**timed[-1], "seconds": seconds, "median_s": statistics.median(seconds),
                    "others_cpu_share": [x for t in timed for x in t["others_cpu_share"]],
                    "attempts": sum(t["attempts"] for t in timed),
                    "peak_rss_gib": max(t["peak_rss_gib"] for t in timed), "rounds": len(timed)}
    return out


def _secs(r: dict) -> float | None:
    return r.get("median_s")


def _cell(r: dict, fmt: str = "{:.3f}") -> str:
    s = _secs(r)
    if s is not None:
        return fmt.format(s)
    return r["status"] + (f" ({r['message']})" if "message" in r else "")


def bounded_work(ours: dict) -> str:
    """What the bounded run spent on keeping its memory bounded, as its stream's timers split it."""
    b = ours.get("bounding")
    if not b:
        return "the chunk into a stream it overflows"
    return (f"{b['compactions']} compaction(s): scoring {b['score_s']:.3f} s + compaction {b['compact_s']:.3f} s "
            f"= {100 * b['share']:.2f} % of ingest (target ≤ 5 %)")


def table(ours: dict, theirs: dict, cfg: dict) -> str:
    width, height = cfg["frame"]
    vit, still = ours["vit_chunk"], ours["vit_image"]
    grid = vit.get("grid") or ["?"] * 3
    tokens = ours.get("tokens", {})
    n_visual, n_audio = tokens.get("visual", "?"), tokens.get("audio", "?")
    n_chunk = n_visual + n_audio if tokens else "?"
    chunk_samples = int(CHUNK_SECONDS * SAMPLE_RATE)
    chunk_mel, clip_mel = int(CHUNK_SECONDS * MEL_FRAMES_PER_SECOND), int(AUDIO_CLIP_SECONDS * MEL_FRAMES_PER_SECOND)
    clip_tokens = int(AUDIO_CLIP_SECONDS * TOKENS_PER_SECOND)
    audio_tokens = theirs["audio_chunk"].get("tokens")
    padded = ""
    if audio_tokens:
        padded = f"; libmtmd pads to {audio_tokens / TOKENS_PER_SECOND:.0f} s, {audio_tokens} tokens"
    rows = [
        ("preprocess: 4 frames → patches", f"4 × {width}×{height} RGB → grid {tuple(grid)}", "preprocess_video",
         "libmtmd: mtmd_tokenize"),
        ("preprocess: 2 s audio → log-mel", f"{chunk_samples:,} samples → {chunk_mel} frames", "preprocess_audio",
         "libmtmd: mtmd_tokenize, 30-s window"),
        ("ViT (vision tower), chunk", f"{vit.get('patches', '?')} patches → {n_visual} tokens", "vit_chunk",
         "libmtmd: 2 frame-pair chunks"),
        ("audio tower, chunk", f"{chunk_mel} mel frames → {n_audio} tokens{padded}", "audio_chunk", ""),
        ("LLM prefill, chunk", f"{n_chunk} embeddings ({cfg['text_type']})", "prefill_chunk", ""),
        ("end to end: feed(video, audio) + close_media", "the chunk as a whole block", "end_to_end", ""),
        ("end to end, 2 chunks bounded (omnimem@128): scoring + compaction included", bounded_work(ours),
         "bounded_chunk", ""),
        ("ViT, one still frame", f"{still.get('patches', '?')} patches", "vit_image", ""),
        ("audio tower, 30-s clip", f"{clip_mel:,} mel frames → {clip_tokens} tokens", "audio_clip", ""),
    ]
    header = ["stage", "work", "omnimem.cpp s", "libmtmd s", "throughput ours ÷ libmtmd (target ≥ 1.0)",
              "peak RSS GiB (ours / libmtmd)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, work, key, note in rows:
        a, b = ours[key], theirs[key]
        ratio = f"{_secs(b) / _secs(a):.2f}×" if _secs(a) and _secs(b) else "–"
        rss = " / ".join(f"{r['peak_rss_gib']:.1f}" if "peak_rss_gib" in r else "–" for r in (a, b))
        theirs_cell = _cell(b) + (f" ({note.removeprefix('libmtmd: ')})" if note and _secs(b) is not None else "")
        lines.append(f"| {label} | {work} | {_cell(a)} | {theirs_cell} | {ratio} | {rss} |")

    stage_keys = ["preprocess_video", "preprocess_audio", "vit_chunk", "audio_chunk", "prefill_chunk"]
    if all(_secs(ours[k]) is not None for k in stage_keys):
        total = sum(_secs(ours[k]) for k in stage_keys)
        lines.append(f"| **chunk total (sum of stages)** | 2 s of media | {total:.3f} | | | |")
        lines.append(f"\nomnimem.cpp spends {total / CHUNK_SECONDS:.2f} s of compute per second of media "
                     f"(≤ 1.0 keeps up with a live stream).")
    return "\n".join(lines)




def ingest_config(threads: int, text_type: str, frame: tuple[int, int], repeats: int, seed: int, quick: bool,
                  workdir: Path) -> dict:
    """The settings every engine's child gets, with the random-weight files (written on first use)."""
    text_path = cached_text_gguf(workdir, QWEN25_OMNI_3B, text_type, seed, log=log)
    mmproj_path = cached_projector_gguf(workdir, QWEN25_OMNI_3B_PROJECTOR, seed, log=log)
    return {"threads": threads, "repeats": repeats, "seed": seed, "quick": quick, "warmup": not quick,
            "frame": list(frame), "text_type": text_type, "text_path": str(text_path), "mmproj_path": str(mmproj_path)}


def measure(cfg: dict) -> dict:
    """{engine: {stage: result}} over cfg["repeats"] rounds. The engines alternate rounds of one timed run per
    stage: this machine's speed drifts over minutes, and alternating spreads the drift over both engines
    instead of putting it into their ratio."""
    rounds = {engine: [] for engine in CHILDREN}
    for r in range(cfg["repeats"]):
        for engine in CHILDREN:
            log(f"{engine}, round {r + 1} of {cfg['repeats']} ...")
            rounds[engine].append(run_child(engine, {**cfg, "repeats": 1}))
    return {engine: merge_rounds(runs) for engine, runs in rounds.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--text-type", default=DEFAULT_TEXT_TYPE, choices=sorted(WEIGHT_TYPES), help="text model weights")
    ap.add_argument("--frame", type=frame_size, default=DEFAULT_FRAME, help="video frame size WIDTHxHEIGHT")
    ap.add_argument("--repeats", type=int, default=3, help="rounds; each engine runs every stage once per round")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights and media")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="where the random GGUFs are cached")
    ap.add_argument("--json", type=Path, help="write every number and the machine description here")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 run per stage, warm-up on small inputs only, no end-to-end or 30-s clip")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats = 1

    cfg = ingest_config(args.threads, args.text_type, args.frame, args.repeats, args.seed, args.quick, args.workdir)
    text_path, mmproj_path = cfg["text_path"], cfg["mmproj_path"]
    t_start, busy_start, own_start = time.monotonic(), busy_cpu_s(), own_cpu_s()
    results = measure(cfg)
    wall_s = time.monotonic() - t_start
    others_cpu_s = max(0.0, (busy_cpu_s() - busy_start) - (own_cpu_s() - own_start))

    ours, theirs = results["omnimem.cpp"], results["libmtmd"]
    width, height = args.frame
    print(f"\nOne 2-s chunk (4 frames {width}×{height} at {FPS:g} fps, 2 s of 16 kHz audio), Qwen2.5-Omni-3B "
          f"dimensions, random weights (projector F16, text {args.text_type}), {args.threads} threads; "
          f"medians of {args.repeats}")
    print(table(ours, theirs, cfg))
    print(f"\n{wall_s:.0f} s; other processes used {others_cpu_s:.0f} CPU-s meanwhile "
          f"({100 * others_cpu_s / (wall_s * os.cpu_count()):.0f}% of this machine)")

    if args.json:
        write_report(args.json, machine=machine_description(),
                     config={**{k: v for k, v in cfg.items() if not k.endswith("_path")},
                             "text_model": Path(text_path).name, "projector": Path(mmproj_path).name,
                             "chunk_seconds": CHUNK_SECONDS, "fps": FPS, "n_ctx": N_CTX, "n_batch": N_BATCH,
                             "preprocess_loops": PREPROCESS_LOOPS},
                     results=results, wall_s=wall_s, others_cpu_s=others_cpu_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
