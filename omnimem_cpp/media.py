"""Media: reading files and streams in chunks, and preprocessing PCM audio and RGB frames into what the audio
and vision encoders take.

:func:`open` decodes anything FFmpeg reads (through PyAV) into 2-second chunks of frames sampled at 2 fps and
16 kHz mono PCM, lazily, so an hour of video never sits in memory::

    import omnimem_cpp as om

    with om.media.open("talk.mp4") as reader:
        for chunk in reader:                        # chunk.video uint8 [N, H, W, 3], chunk.audio float32 [n]
            ...

The preprocessing is done by the native library (no Python loops); these wrappers take and return numpy
arrays and reproduce the Qwen2.5-Omni processor of transformers::

    import numpy as np
    import omnimem_cpp.media as media

    mel = media.log_mel(pcm)                        # float32 [128, ceil(len / 160)], pcm: 16 kHz mono
    stream = media.LogMelStream()                   # the same frames for audio arriving in pieces
    patches, grid = media.image_patches(rgb)        # rgb: uint8 [H, W, 3] → float32 [t·h·w, 1176], (t, h, w)
    patches, grid = media.image_patches(frames, **media.VIDEO_PIXELS)   # frames: uint8 [N, H, W, 3]

:func:`log_mel` takes 16 kHz mono; :func:`open` resamples and downmixes any audio track to that.
"""

from __future__ import annotations

import fractions
import math
import os
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

import av
import numpy as np

from ._native import NativeHandle, check, ffi, lib
from .errors import InvalidArgumentError, MediaError

__all__ = [
    "SAMPLE_RATE",
    "N_MEL",
    "PATCH_DIM",
    "IMAGE_PIXELS",
    "VIDEO_PIXELS",
    "log_mel",
    "LogMelStream",
    "Resampler",
    "mel_filters",
    "smart_resize",
    "image_patches",
    "open",
    "MediaReader",
    "Chunk",
]

SAMPLE_RATE = lib.OM_AUDIO_SAMPLE_RATE
"""The rate, in Hz, :func:`log_mel` expects."""

N_MEL = lib.OM_AUDIO_N_MEL
"""Mel bins of the Qwen2.5-Omni audio encoder."""

PATCH_DIM = lib.OM_IMAGE_PATCH_DIM
"""Values per vision patch: 3 channels × 2 frames × 14 × 14."""

IMAGE_PIXELS = {"min_pixels": 4 * 28 * 28, "max_pixels": 16384 * 28 * 28}
"""The image processor's pixel limits for a still image (3136 to 12,845,056 px)."""

VIDEO_PIXELS = {"min_pixels": 128 * 28 * 28, "max_pixels": 768 * 28 * 28}
"""The processor's pixel limits for a video frame (100,352 to 602,112 px)."""


_N_FREQ_BINS = 201
"""Bins of the one-sided power spectrum of the 400-sample (25 ms) frames."""


def _check_size_query(status: int) -> None:
    """A call made with no output buffer to learn the output size answers BUFFER_TOO_SMALL; any other
    failure is the input's fault and raises."""
    if status != lib.OM_STATUS_BUFFER_TOO_SMALL:
        check(status)


def _mono_pcm(pcm: np.ndarray) -> np.ndarray:
    """``pcm`` as the contiguous float32 samples the library reads, refusing what would be misread."""
    samples = np.asarray(pcm)
    if samples.ndim != 1:
        raise InvalidArgumentError(
            f"pcm must be 1-D mono samples, got shape {samples.shape}; downmix multi-channel audio first"
        )
    if not np.issubdtype(samples.dtype, np.floating):
        raise InvalidArgumentError(f"pcm must be floating point in [-1, 1], got dtype {samples.dtype}")
    return np.ascontiguousarray(samples, dtype=np.float32)


def log_mel(pcm: np.ndarray, *, n_mel: int = N_MEL) -> np.ndarray:
    """Whisper-style log-mel features of mono 16 kHz PCM, as float32 ``[n_mel, ceil(len(pcm) / 160)]``.

    Equal to the valid frames (``feature_attention_mask``) of the Qwen2.5-Omni processor's
    ``input_features``; clips longer than its 300 s are not truncated. ``pcm`` is a 1-D float array (any
    float dtype; values nominally in [-1, 1]). For audio that arrives in pieces, see :class:`LogMelStream`.

    Raises:
        InvalidArgumentError: ``pcm`` is not 1-D, is empty, or holds NaN or infinity.
    """
    samples = _mono_pcm(pcm)
    n_frames = ffi.new("int64_t *")
    pcm_c = ffi.from_buffer("float[]", samples)
    _check_size_query(lib.om_audio_log_mel(pcm_c, samples.size, n_mel, ffi.NULL, 0, n_frames))
    out = np.empty((n_mel, n_frames[0]), dtype=np.float32)
    check(lib.om_audio_log_mel(pcm_c, samples.size, n_mel, ffi.from_buffer("float[]", out), out.size, n_frames))
    return out


class LogMelStream(NativeHandle):
    """The :func:`log_mel` features of one clip that arrives in pieces of any size (live audio), each frame
    available as soon as the samples its 25 ms window covers are in; memory stays bounded however long the
    clip runs::

        with media.LogMelStream() as mel:
            for pcm in pieces:                      # float 16 kHz mono, any lengths
                mel.push(pcm)
                features = mel.take()               # float32 [128, frames ready so far]
            mel.finish()                            # the clip ended: its last frames become ready
            features = mel.take()

    The frames equal :func:`log_mel` over the whole clip, however it is cut, but for the 8-decade floor:
    :meth:`take` applies the loudest frame computed so far, where :func:`log_mel` applies the loudest of the
    whole clip. Frames taken before a louder passage arrived therefore stay below the floor that passage
    raises, in just the bins :func:`log_mel` clamps to it. Taking every frame after :meth:`finish` gives
    :func:`log_mel` exactly.
    """

    def __init__(self, *, n_mel: int = N_MEL):
        out = ffi.new("om_log_mel_stream **")
        check(lib.om_log_mel_stream_init(n_mel, out))
        self._handle = out[0]
        self.n_mel = n_mel

    @property
    def _live(self):
        if self._handle is None:
            raise InvalidArgumentError("this log-mel stream is closed")
        return self._handle

    def push(self, pcm: np.ndarray) -> None:
        """Appends 16 kHz mono samples (a 1-D float array of any length, empty included).

        Raises:
            InvalidArgumentError: ``pcm`` is not 1-D floats or holds NaN or infinity (nothing is appended),
                or the stream is finished.
        """
        samples = _mono_pcm(pcm)
        check(lib.om_log_mel_stream_push(self._live, ffi.from_buffer("float[]", samples), samples.size))

    def finish(self) -> None:
        """Ends the clip: its last frames, which see silence past its end as :func:`log_mel`'s do, become
        ready. Calling it again does nothing."""
        check(lib.om_log_mel_stream_finish(self._live))

    @property
    def n_ready(self) -> int:
        """Frames computed and not yet taken."""
        return lib.om_log_mel_stream_n_ready(self._live)

    @property
    def n_samples(self) -> int:
        """Samples pushed so far."""
        return lib.om_log_mel_stream_n_samples(self._live)

    @property
    def n_taken(self) -> int:
        """Frames taken so far: the next frame taken is centred on sample 160 × this."""
        return lib.om_log_mel_stream_n_taken(self._live)

    def take(self, n: int | None = None) -> np.ndarray:
        """Moves the oldest ``n`` ready frames out (all of them by default), as float32 ``[n_mel, n]``.

        Raises:
            InvalidArgumentError: ``n`` is negative or more than :attr:`n_ready`.
        """
        handle = self._live
        n = lib.om_log_mel_stream_n_ready(handle) if n is None else int(n)
        out = np.empty((self.n_mel, max(n, 0)), dtype=np.float32)
        check(lib.om_log_mel_stream_take(handle, n, ffi.from_buffer("float[]", out), out.size))
        return out

    def close(self) -> None:
        """Frees the stream. Safe to call twice."""
        if self._handle is not None:
            lib.om_log_mel_stream_free(self._handle)
            self._handle = None

    def __repr__(self) -> str:
        if self._handle is None:
            return "LogMelStream(closed)"
        return f"LogMelStream(n_mel={self.n_mel}, {self.n_samples} samples, {self.n_taken} frames taken, " \
               f"{self.n_ready} ready)"


def mel_filters(n_mel: int = N_MEL) -> np.ndarray:
    """The mel filterbank :func:`log_mel` applies to the power spectrum, float32 ``[n_mel, 201]``."""
    out = np.empty((max(n_mel, 0), _N_FREQ_BINS), dtype=np.float32)  # the library checks n_mel
    check(lib.om_audio_mel_filters(n_mel, ffi.from_buffer("float[]", out), out.size))
    return out


def smart_resize(
    height: int,
    width: int,
    *,
    min_pixels: int = IMAGE_PIXELS["min_pixels"],
    max_pixels: int = IMAGE_PIXELS["max_pixels"],
) -> tuple[int, int]:
    """The ``(height, width)`` the vision encoder sees an image at: multiples of 28 whose product lies in
    ``[min_pixels, max_pixels]``, keeping the aspect ratio as closely as possible."""
    out_h = ffi.new("int32_t *")
    out_w = ffi.new("int32_t *")
    check(lib.om_image_smart_resize(_int32(height, "height"), _int32(width, "width"), min_pixels, max_pixels,
                                    out_h, out_w))
    return out_h[0], out_w[0]


def image_patches(
    frames: np.ndarray,
    *,
    min_pixels: int = IMAGE_PIXELS["min_pixels"],
    max_pixels: int = IMAGE_PIXELS["max_pixels"],
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Vision-encoder input of one image ``uint8 [H, W, 3]`` or of video frames ``uint8 [N, H, W, 3]``.

    Frames are resized with :func:`smart_resize` (bicubic, antialiased on reduction), scaled to [0, 1],
    CLIP-normalised and cut into 14×14 patches over pairs of frames (a still image, or a video's odd last
    frame, is paired with itself). For video, pass ``**VIDEO_PIXELS``.

    Returns:
        ``(patches, (t, h, w))``: float32 ``[t·h·w, 1176]`` in the order the ViT takes them, and the grid in
        patches (``t`` frame pairs, ``h × w`` patches of 14 px each).

    Raises:
        InvalidArgumentError: not uint8 RGB of the shapes above, an empty frame, or an aspect ratio above
            200.
    """
    pixels = np.asarray(frames)
    if pixels.ndim == 3:
        pixels = pixels[np.newaxis]
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise InvalidArgumentError(
            f"frames must be RGB, [H, W, 3] or [N, H, W, 3], got shape {pixels.shape}; "
            "convert grayscale or RGBA images to RGB first"
        )
    if pixels.dtype != np.uint8:
        raise InvalidArgumentError(f"frames must be uint8 RGB (0..255), got dtype {pixels.dtype}")
    n, h, w = (_int32(v, name) for v, name in zip(pixels.shape[:3], ("frame count", "height", "width")))
    if n == 0:
        raise InvalidArgumentError("no frames given")
    rh, rw = smart_resize(h, w, min_pixels=min_pixels, max_pixels=max_pixels)
    pixels = np.ascontiguousarray(pixels)
    rgb_c = ffi.from_buffer("uint8_t[]", pixels)
    grid = ffi.new("int32_t[3]")
    _check_size_query(lib.om_image_patches(rgb_c, n, h, w, rh, rw, ffi.NULL, 0, grid))
    t, gh, gw = grid[0], grid[1], grid[2]
    out = np.empty((t * gh * gw, PATCH_DIM), dtype=np.float32)
    check(lib.om_image_patches(rgb_c, n, h, w, rh, rw, ffi.from_buffer("float[]", out), out.size, grid))
    return out, (t, gh, gw)


def _int32(value: int, what: str) -> int:
    value = int(value)
    if not 0 <= value < 2**31:
        raise InvalidArgumentError(f"{what} {value} is out of range")
    return value


# --- reading media ------------------------------------------------------------------------------------

_TIME_SLACK = 1e-3
"""Seconds by which a frame's timestamp may pass a sample time and still count as at it: time bases round a
frame meant for an exact sample time to a tick that can land just after it."""


def _first_index(seconds: float, rate: float) -> int:
    """The first sample index whose time ``index / rate`` is at or after ``seconds``; the small tolerance keeps
    boundaries such as 2.0 s × 2 fps = 4 from rounding up to 5."""
    return math.ceil(seconds * rate - 1e-9)


@dataclass(frozen=True, repr=False)
class Chunk:
    """The stretch ``[start, start + chunk_seconds)`` of a media source, as :func:`open` yields it.

    ``video`` holds the frames at the sample times ``k / fps`` inside the stretch, uint8 RGB ``[N, H, W, 3]``;
    ``audio`` holds float32 mono PCM at ``sample_rate``. Either is None when the chunk has none of it: the
    media has no such track, or the track ended earlier. The last chunk of a source is usually shorter.
    ``fps`` and ``sample_rate`` travel with the data so that a consumer needs no other context.
    """

    index: int
    start: float
    video: np.ndarray | None = field(compare=False)
    audio: np.ndarray | None = field(compare=False)
    fps: float
    sample_rate: int

    def __repr__(self) -> str:
        video = None if self.video is None else list(self.video.shape)
        audio = None if self.audio is None else list(self.audio.shape)
        return f"Chunk(index={self.index}, start={self.start:g}, video={video}, audio={audio})"


class _FrameSampler:
    """Settles each sample time ``k / fps`` on the latest decoded frame at or before it (the first frame stands
    in for times before it), converting to RGB only the frames that are sampled, each once."""

    def __init__(self, fps: float, origin: float, frame_step: float):
        self._fps = fps
        self._origin = origin
        self._frame_step = frame_step  # seconds per frame when frames carry no timestamp or duration
        self._frame = None
        self._time = 0.0
        self._pushed = 0
        self._rgb = None
        self._size = None  # (width, height) of the first frame; later frames of another size are scaled to it
        self._samples: list[np.ndarray] = []
        self.taken = 0  # sample index of self._samples[0]

    @property
    def settled(self) -> int:
        """Sample times whose frame is known: those before the latest decoded frame's timestamp."""
        return self.taken + len(self._samples)

    def push(self, frame: av.VideoFrame) -> None:
        # Raw elementary streams (.h264, .hevc) carry no timestamps: frames then follow each other at the rate.
        time = self._pushed * self._frame_step if frame.time is None else frame.time - self._origin
        self._pushed += 1
        if self._frame is not None:
            self._settle_before(time - _TIME_SLACK)
        else:
            self._size = (frame.width, frame.height)
        self._frame, self._time, self._rgb = frame, time, None

    def finish(self) -> None:
        """At the end of the stream the last frame covers the sample times up to its end."""
        if self._frame is None:
            return
        duration = self._frame.duration
        step = float(duration * self._frame.time_base) if duration else self._frame_step
        self._settle_before(self._time + step - _TIME_SLACK)

    def take(self, stop: int) -> np.ndarray | None:
        """The settled samples with index below ``stop`` not taken yet, as ``[N, H, W, 3]``, or None."""
        n = max(0, min(stop - self.taken, len(self._samples)))
        if n == 0:
            return None
        frames = np.stack(self._samples[:n])
        del self._samples[:n]
        self.taken += n
        return frames

    def _settle_before(self, time: float) -> None:
        while self.settled / self._fps < time:
            if self._rgb is None:
                width, height = self._size
                self._rgb = self._frame.to_ndarray(format="rgb24", width=width, height=height)
            self._samples.append(self._rgb)


def _mono_resampler(rate: int) -> av.AudioResampler:
    # For float output FFmpeg's downmix matrix is unnormalised (stereo → mono adds the channels at −3 dB each,
    # which lifts identical channels by 41 % and can exceed 1); capping it at 1 averages the channels, as the
    # reference pipeline's mono loading does.
    return av.AudioResampler(format="flt", layout="mono", rate=rate, options={"rematrix_maxval": "1.0"})


class Resampler:
    """Resamples mono float32 PCM arriving in pieces from ``rate_in`` to ``rate_out`` Hz, keeping the filter's
    state between pieces so they join seamlessly; :meth:`flush` returns the samples the filter still holds.

    Example::

        r = media.Resampler(44100)
        pcm16k = np.concatenate([r(piece) for piece in pieces] + [r.flush()])
    """

    def __init__(self, rate_in: int, rate_out: int = SAMPLE_RATE) -> None:
        if rate_in <= 0 or rate_out <= 0:
            raise MediaError(f"sample rates must be positive, got {rate_in} and {rate_out}")
        self.rate_in, self.rate_out = rate_in, rate_out
        self._resampler = _mono_resampler(rate_out)
        self._next_pts = 0

    def __call__(self, pcm: np.ndarray) -> np.ndarray:
        samples = np.ascontiguousarray(pcm, dtype=np.float32).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate = self.rate_in
        frame.pts = self._next_pts
        frame.time_base = fractions.Fraction(1, self.rate_in)
        self._next_pts += samples.shape[1]
        return self._collect(frame)

    def flush(self) -> np.ndarray:
        return self._collect(None)

    def _collect(self, frame: av.AudioFrame | None) -> np.ndarray:
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)


class _AudioTrack:
    """Downmixes (channel average) and resamples decoded audio to mono float32 at one rate, buffering it until
    taken."""

    def __init__(self, rate: int, origin: float):
        self._rate = rate
        self._origin = origin
        self._resampler = _mono_resampler(rate)
        self._started = False
        self._parts: list[np.ndarray] = []
        self.buffered = 0  # samples received so far, taken or not
        self.taken = 0

    def push(self, frame: av.AudioFrame) -> None:
        if not self._started:
            self._started = True
            if frame.time is not None:
                # A track that starts after the media's origin (common in Matroska and MPEG-TS) is preceded by
                # silence, so that sample i stays at time i / rate beside the video.
                self._append(np.zeros(max(0, round((frame.time - self._origin) * self._rate)), np.float32))
        self._resample(frame)

    def finish(self, end: int | None) -> None:
        """Flushes the resampler at the end of the stream and cuts the track at sample ``end`` when its length
        is known: AAC decoders give whole 1024-sample frames, so the encoder's padding would otherwise
        lengthen the track."""
        self._resample(None)
        excess = 0 if end is None else self.buffered - max(end, self.taken)
        if excess > 0:
            pending = np.concatenate(self._parts)[:-excess]
            self._parts = [pending] if pending.size else []
            self.buffered -= excess

    def take(self, stop: int) -> np.ndarray | None:
        """The samples with index below ``stop`` not taken yet, or None if there are none."""
        n = max(0, min(stop, self.buffered) - self.taken)
        if n == 0:
            return None
        pending = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
        self.taken += n
        if n == pending.size:
            self._parts = []
            return pending
        self._parts = [pending[n:]]
        return pending[:n].copy()  # a view would keep the next chunk's samples alive with this one

    def _resample(self, frame: av.AudioFrame | None) -> None:
        for out in self._resampler.resample(frame):
            self._append(out.to_ndarray().reshape(-1))

    def _append(self, samples: np.ndarray) -> None:
        if samples.size:
            self._parts.append(samples)
            self.buffered += samples.size


class MediaReader:
    """An open media source that yields :class:`Chunk` objects in time order; made by :func:`open`.

    Decoding is lazy: the reader holds the current chunk, the decoders' buffers and whatever the container
    interleaves ahead of it (well-muxed files keep tracks within a second of each other), never the whole
    file. It is a single-pass iterator and a context manager; closing it releases the file or connection.

    Attributes:
        duration: seconds, from the container or track metadata; None when unknown (e.g. a live stream).
        has_video, has_audio: which tracks are read (an album cover in an audio file is not video).
        width, height: the video's frame size in pixels; None without video.
        n_chunks: chunks the duration amounts to; None when the duration is unknown.
        chunk_seconds, fps, sample_rate: as given to :func:`open`.
    """

    def __init__(self, container: av.container.InputContainer, name: str, *, chunk_seconds: float, fps: float,
                 sample_rate: int):
        self._container = container
        self._name = name
        self.chunk_seconds = chunk_seconds
        self.fps = fps
        self.sample_rate = sample_rate
        video = container.streams.best("video")
        if video is not None and video.disposition & av.stream.Disposition.attached_pic:
            video = None
        self._video = video
        self._audio = container.streams.best("audio")
        if video is None and self._audio is None:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
            raise MediaError(f"{name} has neither a video nor an audio track ({kinds})")
        self.has_video = video is not None
        self.has_audio = self._audio is not None
        self.width = self.height = None
        if video is not None:  # 0 in the metadata means unknown until decoded
            self.width = video.codec_context.width or None
            self.height = video.codec_context.height or None
        self.duration = self._metadata_duration()
        self.n_chunks = None if self.duration is None else _first_index(self.duration, 1 / chunk_seconds)
        self._chunks = self._generate()

    def __iter__(self) -> Iterator[Chunk]:
        return self

    def __next__(self) -> Chunk:
        return next(self._chunks)

    def __enter__(self) -> MediaReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stops decoding and releases the source; iterating afterwards yields nothing."""
        self._chunks.close()
        self._container.close()

    def __repr__(self) -> str:
        return (f"MediaReader({self._name!r}, duration={self.duration}, video={self.width}x{self.height}"
                f" at {self.fps:g} fps, audio={self.has_audio})")

    def _metadata_duration(self) -> float | None:
        if self._container.duration is not None:
            return self._container.duration / av.time_base
        tracks = [s for s in (self._video, self._audio) if s is not None and s.duration is not None]
        return max(float(s.duration * s.time_base) for s in tracks) if tracks else None

    def _audio_end(self, origin: float) -> int | None:
        """The audio track's end in output samples, from its metadata; None when unknown."""
        track = self._audio
        if track.duration is None:
            return None
        end = (track.start_time or 0) + track.duration
        return round((float(end * track.time_base) - origin) * self.sample_rate)

    def _generate(self) -> Iterator[Chunk]:
        # Times count from the container's start, which is far from 0 in MPEG-TS and live streams.
        start_time = self._container.start_time
        origin = start_time / av.time_base if start_time is not None else 0.0
        video = audio = None
        if self._video is not None:
            self._video.thread_type = "AUTO"  # FFmpeg's frame and slice threads: decoding is the costly part
            rate = self._video.average_rate
            video = _FrameSampler(self.fps, origin, 1 / float(rate) if rate else 0.0)
        if self._audio is not None:
            audio = _AudioTrack(self.sample_rate, origin)
        streams = [s for s in (self._video, self._audio) if s is not None]
        index = 0
        try:
            for packet in self._container.demux(*streams):
                track = video if packet.stream is self._video else audio
                for frame in packet.decode():
                    track.push(frame)
                while self._covered(index + 1, video, audio):
                    yield self._take(index, video, audio)
                    index += 1
            if video is not None:
                video.finish()
            if audio is not None:
                audio.finish(self._audio_end(origin))
        except av.error.FFmpegError as e:
            raise MediaError(f"{self._name}: decoding failed near {index * self.chunk_seconds:g} s: {e}") from e
        while ((video is not None and video.settled > video.taken)
               or (audio is not None and audio.buffered > audio.taken)):
            yield self._take(index, video, audio)
            index += 1

    def _covered(self, n_chunks: int, video: _FrameSampler | None, audio: _AudioTrack | None) -> bool:
        """Whether every track has decoded past the end of the first ``n_chunks`` chunks."""
        end = n_chunks * self.chunk_seconds
        return ((video is None or video.settled >= _first_index(end, self.fps))
                and (audio is None or audio.buffered >= _first_index(end, self.sample_rate)))

    def _take(self, index: int, video: _FrameSampler | None, audio: _AudioTrack | None) -> Chunk:
        end = (index + 1) * self.chunk_seconds
        return Chunk(
            index=index,
            start=index * self.chunk_seconds,
            video=None if video is None else video.take(_first_index(end, self.fps)),
            audio=None if audio is None else audio.take(_first_index(end, self.sample_rate)),
            fps=self.fps,
            sample_rate=self.sample_rate,
        )


def open(  # noqa: A001 - om.media.open reads like the built-in open it mirrors
    source: str | os.PathLike | BinaryIO,
    *,
    chunk_seconds: float = 2.0,
    fps: float = 2.0,
    sample_rate: int = SAMPLE_RATE,
) -> MediaReader:
    """Opens a media file, URL or binary file object for reading in chunks of ``chunk_seconds``.

    Anything FFmpeg demuxes and decodes works: mp4, mkv, webm, mov with or without audio, wav, mp3, flac,
    HTTP(S) and RTSP URLs. Each :class:`Chunk` covers ``[start, start + chunk_seconds)``: video frames sampled
    at ``fps`` (frame ``k`` is the latest frame shown at or before ``k / fps``) and the audio track downmixed
    to mono (the average of the channels) and resampled to ``sample_rate`` Hz by FFmpeg's resampler. The
    defaults are what Qwen2.5-Omni takes.

    Raises:
        InvalidArgumentError: a non-positive ``chunk_seconds``, ``fps`` or ``sample_rate``.
        MediaError: the source does not exist, is not media FFmpeg can read, or has neither video nor audio;
            iterating raises it where the media fails to decode.
    """
    sample_rate = int(sample_rate)
    for value, what in ((chunk_seconds, "chunk_seconds"), (fps, "fps"), (sample_rate, "sample_rate")):
        if not value > 0 or not math.isfinite(value):
            raise InvalidArgumentError(f"{what} must be a positive number, got {value!r}")
    if isinstance(source, (str, os.PathLike)):
        source = os.fspath(source)
        name = source
    else:
        name = getattr(source, "name", None) or type(source).__name__
    try:
        container = av.open(source, "r")
    except av.error.FileNotFoundError as e:
        raise MediaError(f"{name}: no such file") from e
    except av.error.InvalidDataError as e:
        raise MediaError(f"{name} is not a media file FFmpeg can read (unknown or corrupt format)") from e
    except av.error.FFmpegError as e:
        raise MediaError(f"cannot open {name}: {e}") from e
    try:
        return MediaReader(container, name, chunk_seconds=chunk_seconds, fps=fps, sample_rate=sample_rate)
    except BaseException:
        container.close()
        raise
