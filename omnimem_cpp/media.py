"""Media preprocessing: PCM audio and RGB frames into what the audio and vision encoders take.

The work is done by the native library (no Python loops); these wrappers take and return numpy arrays and
reproduce the Qwen2.5-Omni processor of transformers::

    import numpy as np
    import omnimem_cpp.media as media

    mel = media.log_mel(pcm)                        # float32 [128, ceil(len / 160)], pcm: 16 kHz mono
    patches, grid = media.image_patches(rgb)        # rgb: uint8 [H, W, 3] → float32 [t·h·w, 1176], (t, h, w)
    patches, grid = media.image_patches(frames, **media.VIDEO_PIXELS)   # frames: uint8 [N, H, W, 3]

Resampling to 16 kHz and downmixing to mono are the caller's (PyAV's audio resampler does both).
"""

from __future__ import annotations

import numpy as np

from ._native import check, ffi, lib
from .errors import InvalidArgumentError

__all__ = [
    "SAMPLE_RATE",
    "N_MEL",
    "PATCH_DIM",
    "IMAGE_PIXELS",
    "VIDEO_PIXELS",
    "log_mel",
    "mel_filters",
    "smart_resize",
    "image_patches",
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


def log_mel(pcm: np.ndarray, *, n_mel: int = N_MEL) -> np.ndarray:
    """Whisper-style log-mel features of mono 16 kHz PCM, as float32 ``[n_mel, ceil(len(pcm) / 160)]``.

    Equal to the valid frames (``feature_attention_mask``) of the Qwen2.5-Omni processor's
    ``input_features``; clips longer than its 300 s are not truncated. ``pcm`` is a 1-D float array (any
    float dtype; values nominally in [-1, 1]).

    Raises:
        InvalidArgumentError: ``pcm`` is not 1-D, is empty, or holds NaN or infinity.
    """
    samples = np.asarray(pcm)
    if samples.ndim != 1:
        raise InvalidArgumentError(
            f"pcm must be 1-D mono samples, got shape {samples.shape}; downmix multi-channel audio first"
        )
    if not np.issubdtype(samples.dtype, np.floating):
        raise InvalidArgumentError(f"pcm must be floating point in [-1, 1], got dtype {samples.dtype}")
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    n_frames = ffi.new("int64_t *")
    pcm_c = ffi.from_buffer("float[]", samples)
    _check_size_query(lib.om_audio_log_mel(pcm_c, samples.size, n_mel, ffi.NULL, 0, n_frames))
    out = np.empty((n_mel, n_frames[0]), dtype=np.float32)
    check(lib.om_audio_log_mel(pcm_c, samples.size, n_mel, ffi.from_buffer("float[]", out), out.size, n_frames))
    return out


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
