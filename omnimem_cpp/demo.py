"""`omnimem demo`: runs the model shipped inside the package end to end, with no download.

It writes a short synthetic video with sound, streams it through the model in 2-second chunks (frames at
2 fps and 16 kHz audio through the native encoders, interleaved as Qwen2.5-Omni expects), and asks a
question. The shipped model is tiny and has random weights — its answers are noise — so the demo shows
that the pipeline runs on this machine and how fast each part is, not what the model understands.
"""

from __future__ import annotations

import pathlib
import tempfile
import time
from typing import Optional

import numpy as np
from tqdm import tqdm

from . import media
from .model import Model

DATA = pathlib.Path(__file__).resolve().parent / "data"
DEMO_MODEL = DATA / "demo-text.gguf"
DEMO_PROJECTOR = DATA / "demo-mmproj.gguf"


def write_demo_clip(path: pathlib.Path, seconds: int = 6, fps: int = 10, sample_rate: int = 16000) -> pathlib.Path:
    """A video whose colour changes every second, with a tone that rises every second (mp4: MPEG-4 + AAC)."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 224, 168, "yuv420p"
        audio = out.add_stream("aac", rate=sample_rate)
        for i in range(seconds * fps):
            colour = np.array([(i // fps) * 40 % 256, 255 - (i // fps) * 40 % 256, 128], np.uint8)
            frame = np.broadcast_to(colour, (168, 224, 3)).copy()
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        t = np.arange(seconds * sample_rate) / sample_rate
        tone = (0.3 * np.sin(2 * np.pi * (300 + 100 * np.floor(t)) * t)).astype(np.float32)
        for start in range(0, tone.size, 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = sample_rate, start
            out.mux(audio.encode(frame))
        out.mux(video.encode())
        out.mux(audio.encode())
    return path


def run_demo(n_threads: Optional[int] = None, clip: Optional[str] = None) -> int:
    """Streams a synthetic clip (or `clip`, any video file) through the embedded model and asks about it."""
    print(f"model: {DEMO_MODEL.name} + {DEMO_PROJECTOR.name} (tiny, random weights: the answer is noise; the "
          "demo checks that decoding, encoders, streaming and sampling run here)")
    with tempfile.TemporaryDirectory() as tmp:
        source = pathlib.Path(clip) if clip else write_demo_clip(pathlib.Path(tmp) / "demo.mp4")
        # the demo model is tiny: more threads would only wait on each other
        with Model(DEMO_MODEL, mmproj=DEMO_PROJECTOR, n_threads=n_threads or 1) as model, \
                model.stream(n_ctx=8192) as stream, media.open(source) as reader:
            print(repr(model))
            start = time.perf_counter()
            for chunk in tqdm(reader, total=reader.n_chunks, unit="chunk", desc=f"streaming {source.name}"):
                stream.feed(chunk)
            stream.close_media()
            ingest_s = time.perf_counter() - start
            print(f"{reader.duration:.1f} s of video with sound -> {stream.n_tokens} tokens in memory, "
                  f"{ingest_s:.2f} s ({reader.duration / ingest_s:.1f}x real time)")

            question = "What colour was the screen when the tone was highest?"
            print(f"Q: {question}\nA: ", end="", flush=True)
            start = time.perf_counter()
            n_pieces = 0
            for piece in stream.ask(question, max_tokens=24, stream=True):
                print(piece, end="", flush=True)
                n_pieces += 1
            answer_s = time.perf_counter() - start
            print(f"\n{n_pieces} pieces in {answer_s * 1e3:.0f} ms; the stream still holds {stream.n_tokens} "
                  "tokens (questions are rolled back)")
    return 0
