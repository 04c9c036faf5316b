"""Rendering a timeline into real media, lazily, one chunk at a time.

Frames are drawn from cached parts: one background texture per scene and one boolean mask per shape,
pasted into the frame at the object's slot. Consecutive frames with the same scene and objects reuse the
same drawn image, and only a few levels of sensor noise (from a small bank) tell them apart, so the video
is as redundant as real footage. Audio is background noise plus a faint mains hum, with each sound event
synthesised as two tones. Every chunk seeds its own noise from (seed, chunk index), so chunks come out the
same whatever order or subset is rendered.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from ..media import Chunk
from .config import PATCH_PIXELS, AVRecallConfig
from .events import Timeline

COLOUR_RGB = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (235, 215, 40),
    "purple": (140, 50, 180), "orange": (240, 140, 30), "white": (245, 245, 245), "cyan": (40, 210, 220),
}
NOISE_BANK = 4          # distinct sensor-noise frames; cycling them is far cheaper than drawing noise per frame
NOISE_LEVELS = 3        # ± grey levels of sensor noise
SOUND_AMPLITUDE = 0.3
FADE_SECONDS = 0.01     # raised-cosine edges, so tones do not click


def shape_mask(shape: str, size: int) -> np.ndarray:
    """A boolean ``[size, size]`` mask of a shape centred in its box."""
    c = (np.arange(size) + 0.5) / size * 2 - 1          # -1..1 across the box
    y, x = np.meshgrid(c, c, indexing="ij")
    r = np.hypot(x, y)
    masks = {
        "circle": r <= 0.9,
        "square": (np.abs(x) <= 0.75) & (np.abs(y) <= 0.75),
        "triangle": (y <= 0.8) & (y >= -0.9 + 1.7 * np.abs(x)),
        "cross": (np.abs(x - y) <= 0.3) & (r <= 0.95) | (np.abs(x + y) <= 0.3) & (r <= 0.95),
        "plus": (np.abs(x) <= 0.22) & (np.abs(y) <= 0.9) | (np.abs(y) <= 0.22) & (np.abs(x) <= 0.9),
        "diamond": np.abs(x) + np.abs(y) <= 0.95,
        "ring": (r <= 0.9) & (r >= 0.55),
        "bar": (np.abs(x) <= 0.9) & (np.abs(y) <= 0.3),
    }
    if shape not in masks:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(masks)}")
    return masks[shape]


def symbol_tones(config: AVRecallConfig) -> dict:
    """symbol -> (first, second) tone in Hz. The first tones are all distinct, so symbols never share a
    pattern; the interval (a fifth or a major third) varies so neighbours also differ in shape."""
    return {s: (400.0 + 160.0 * i, (400.0 + 160.0 * i) * (1.5 if i % 2 else 1.25))
            for i, s in enumerate(config.symbols)}


class AVRecallStream:
    """A generated stream: its events and questions at once, its media chunk by chunk.

    Iterating yields :class:`omnimem_cpp.media.Chunk` objects (as :func:`omnimem_cpp.media.open` does); :meth:`chunk` renders any one of them. Nothing but the small
    caches (a background and a drawn frame) outlives a chunk, so hour-long streams stream in bounded memory.
    """

    def __init__(self, config: Optional[AVRecallConfig] = None):
        from .questions import generate_questions

        self.config = config or AVRecallConfig()
        self.timeline = Timeline(self.config)
        self.events = self.timeline.events
        self.questions = generate_questions(self.config, self.timeline)
        cfg = self.config
        self.n_chunks = math.ceil(cfg.seconds / cfg.chunk_seconds - 1e-9)
        self._tones = symbol_tones(cfg)
        n_slots = len(cfg.slots)
        self._box = int(min(cfg.width / n_slots, cfg.height) * 0.6)
        # slots sit left to right in config order, on the frame's middle line
        self._slot_origin = {s: (cfg.height // 2 - self._box // 2,
                                 int((i + 0.5) * cfg.width / n_slots) - self._box // 2)
                             for i, s in enumerate(cfg.slots)}
        self._masks = {o: shape_mask(o, self._box) for o in cfg.objects}
        self._slot_cover = self._cover_of_slots()
        noise_rng = np.random.default_rng([cfg.seed, 1])
        self._noise = noise_rng.integers(-NOISE_LEVELS, NOISE_LEVELS + 1, (NOISE_BANK, cfg.height, cfg.width, 3),
                                         dtype=np.int16)
        self._background_cache: tuple = (None, None)
        self._frame_cache: tuple = (None, None)

    @property
    def duration(self) -> float:
        return self.config.seconds

    @property
    def chunk_seconds(self) -> float:
        return self.config.chunk_seconds

    def __len__(self) -> int:
        return self.n_chunks

    def __repr__(self) -> str:
        return f"AVRecallStream(seconds={self.config.seconds:g}, seed={self.config.seed})"

    def __iter__(self) -> Iterator[Chunk]:
        for i in range(self.n_chunks):
            yield self.chunk(i)

    def chunk(self, index: int) -> Chunk:
        cfg = self.config
        if not 0 <= index < self.n_chunks:
            raise IndexError(f"chunk {index} of {self.n_chunks}")
        start = index * cfg.chunk_seconds
        end = min(start + cfg.chunk_seconds, cfg.seconds)
        rng = np.random.default_rng([cfg.seed, 2, index])
        first, stop = (math.ceil(t * cfg.fps - 1e-9) for t in (start, end))
        video = np.empty((stop - first, cfg.height, cfg.width, 3), np.uint8)
        for j, k in enumerate(range(first, stop)):
            drawn = self._drawn_frame(k / cfg.fps)
            noisy = drawn + self._noise[rng.integers(NOISE_BANK)]
            np.clip(noisy, 0, 255, out=noisy)
            video[j] = noisy
        s0, s1 = round(start * cfg.sample_rate), round(end * cfg.sample_rate)
        return Chunk(index, start, video, self._audio(rng, s0, s1), float(cfg.fps), int(cfg.sample_rate))

    # --- video ---------------------------------------------------------------------------------------

    def slot_cover(self) -> dict:
        """slot -> [height/28, width/28] share of each merged 28-px cell (one vision token) that lies inside
        the slot's box: which tokens show the object in that slot. Read-only arrays, shared by every call."""
        return self._slot_cover

    def _cover_of_slots(self) -> dict:
        cfg = self.config
        rows, cols = cfg.height // PATCH_PIXELS, cfg.width // PATCH_PIXELS

        def overlap(start: int, n_cells: int) -> np.ndarray:
            lo = np.arange(n_cells) * PATCH_PIXELS
            return np.clip(np.minimum(lo + PATCH_PIXELS, start + self._box) - np.maximum(lo, start), 0, None)

        cover = {s: np.outer(overlap(y, rows), overlap(x, cols)) / PATCH_PIXELS ** 2
                 for s, (y, x) in self._slot_origin.items()}
        for share in cover.values():
            share.flags.writeable = False
        return cover

    def _background(self, scene: int) -> np.ndarray:
        if self._background_cache[0] != scene:
            cfg = self.config
            rng = np.random.default_rng([cfg.seed, 3, scene])
            # a diagonal gradient between two muted colours plus a blocky low-frequency texture
            a, b = rng.integers(30, 140, (2, 3))
            ramp = np.add.outer(np.linspace(0, 0.5, cfg.height), np.linspace(0, 0.5, cfg.width))[..., None]
            coarse = rng.normal(0, 10, (cfg.height // 28 + 1, cfg.width // 28 + 1, 3))
            texture = np.repeat(np.repeat(coarse, 28, axis=0), 28, axis=1)[:cfg.height, :cfg.width]
            image = a + (b - a) * ramp + texture
            self._background_cache = (scene, np.clip(image, 0, 255).astype(np.int16))
        return self._background_cache[1]

    def _drawn_frame(self, t: float) -> np.ndarray:
        """The frame at time ``t`` before sensor noise, int16; cached while the scene and objects hold."""
        key = (self.timeline.scene_at(t), self.timeline.state_key_at(t))
        if self._frame_cache[0] != key:
            frame = self._background(key[0]).copy()
            for obj, (colour, slot) in key[1]:
                y, x = self._slot_origin[slot]
                box = frame[y:y + self._box, x:x + self._box]
                box[self._masks[obj]] = COLOUR_RGB[colour]
            self._frame_cache = (key, frame)
        return self._frame_cache[1]

    # --- audio ---------------------------------------------------------------------------------------

    def _audio(self, rng: np.random.Generator, s0: int, s1: int) -> np.ndarray:
        cfg = self.config
        sr = cfg.sample_rate
        t = np.arange(s0, s1) / sr
        pcm = rng.normal(0.0, cfg.noise_level, s1 - s0) + 0.5 * cfg.noise_level * np.sin(2 * np.pi * 50.0 * t)
        for e in self.timeline.sounds():
            e0, e1 = round(e.time * sr), round((e.time + e.duration) * sr)
            a, b = max(e0, s0), min(e1, s1)
            if a >= b:
                continue
            local = np.arange(a - e0, b - e0) / sr                  # seconds into the sound
            first, second = self._tones[e.symbol]
            half = e.duration / 2
            freq_phase = np.where(local < half, first * local, second * (local - half))
            envelope = np.minimum(1.0, np.minimum(local, e.duration - local) / FADE_SECONDS)
            envelope = np.minimum(envelope, np.minimum(np.abs(local - half) / FADE_SECONDS, 1.0))
            pcm[a - s0:b - s0] += SOUND_AMPLITUDE * envelope * np.sin(2 * np.pi * freq_phase)
        return pcm.astype(np.float32)


def write_mp4(stream: AVRecallStream, path, *, seconds: Optional[float] = None, bit_rate: int = 2_000_000) -> Path:
    """Writes ``stream`` (or its first ``seconds``) to an mp4 (MPEG-4 video at the stream's fps + AAC audio)
    that ``omnimem_cpp.media.open`` reads back; chunks are encoded as they are rendered."""
    import av

    cfg = stream.config
    n_chunks = stream.n_chunks if seconds is None else min(stream.n_chunks,
                                                          math.ceil(seconds / cfg.chunk_seconds - 1e-9))
    path = Path(path)
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=int(round(cfg.fps)))
        video.width, video.height, video.pix_fmt = cfg.width, cfg.height, "yuv420p"
        video.bit_rate = bit_rate
        audio = out.add_stream("aac", rate=cfg.sample_rate)
        frame_size = 1024          # AAC takes whole 1024-sample frames except the last
        pending = np.zeros(0, np.float32)
        n_samples = 0
        for i in range(n_chunks):
            chunk = stream.chunk(i)
            for rgb in chunk.video:
                out.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            pending = np.concatenate([pending, chunk.audio])
            usable = pending.size - pending.size % frame_size if i + 1 < n_chunks else pending.size
            for a in range(0, usable, frame_size):
                piece = np.ascontiguousarray(pending[None, a:a + frame_size])
                frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = cfg.sample_rate, n_samples
                n_samples += piece.shape[1]
                out.mux(audio.encode(frame))
            pending = pending[usable:]
        out.mux(video.encode())
        out.mux(audio.encode())
    return path
