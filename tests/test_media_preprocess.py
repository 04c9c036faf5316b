"""The native media front ends against transformers' Qwen2.5-Omni preprocessing.

Audio: log-mel vs WhisperFeatureExtractor set up as the Qwen2.5-Omni processor uses it, and the streamed
log-mel vs the offline one. Images and video frames: patches vs the slow (PIL) Qwen2VLImageProcessor,
smart_resize vs its Python original. Measured differences are noted at each tolerance.
"""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest

import omnimem_cpp.media as media
from omnimem_cpp import InvalidArgumentError, OmnimemError
from omnimem_cpp._native import check, ffi, lib

SR = 16000


# --- audio --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whisper_features():
    """The Qwen2.5-Omni processor's audio path: a WhisperFeatureExtractor with the checkpoints'
    preprocessor settings (128 bins, clips zero-padded to chunk_length = 300 s), called with the processor's
    audio kwargs. Returns pcm -> (input_features [128, 30000], number of valid frames)."""
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(
        feature_size=128, sampling_rate=SR, hop_length=160, chunk_length=300, n_fft=400, padding_value=0.0,
        dither=0.0, return_attention_mask=True,
    )

    def features(pcm: np.ndarray) -> tuple[np.ndarray, int]:
        out = extractor(pcm, sampling_rate=SR, padding="max_length", return_attention_mask=True, return_tensors="np")
        return out["input_features"][0], int(out["attention_mask"][0].sum())

    return features


def _noise(n: int, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def _tone(n: int, hz: float = 440.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(n) / SR)).astype(np.float32)


@pytest.mark.parametrize("seconds", [1.0, 2.0, 5.3, 0.37])
@pytest.mark.parametrize("kind", ["noise", "tone"])
def test_log_mel_matches_whisper_feature_extractor(whisper_features, seconds, kind):
    n = int(round(seconds * SR))
    pcm = _noise(n, seed=n) if kind == "noise" else _tone(n)
    ours = media.log_mel(pcm)
    ref, n_valid = whisper_features(pcm)
    ref = ref[:, :n_valid]
    assert ours.shape == ref.shape == (128, math.ceil(n / 160))
    assert ours.dtype == np.float32 and ours.flags.c_contiguous
    # Measured: at most 1.6e-5 (the reference's float32 STFT; ours runs in double).
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)


def test_log_mel_range_floor_counts_frames_past_the_valid_ones(whisper_features):
    # Silence, then a click in the last 40 samples: the loudest frame is the first one past the valid
    # frames, whose window is centred on the clip's end. The processor takes its 8-decade floor from that
    # frame too, so the silent valid frames sit at (max - 8 + 4) / 4 only if we do the same.
    pcm = np.zeros(16000, dtype=np.float32)
    pcm[-40:] = 0.9
    full, n_valid = whisper_features(pcm)
    assert np.unravel_index(full.argmax(), full.shape)[1] >= n_valid
    ours = media.log_mel(pcm)
    np.testing.assert_allclose(ours, full[:, :n_valid], rtol=0, atol=1e-4)


def test_log_mel_layout_and_lengths():
    for n in (1, 159, 160, 161, 32000):
        assert media.log_mel(_noise(n, 0)).shape == (128, math.ceil(n / 160))
    # float64 input is converted, not misread
    pcm = _noise(4000, 1)
    np.testing.assert_array_equal(media.log_mel(pcm.astype(np.float64)), media.log_mel(pcm))
    assert media.log_mel(pcm, n_mel=80).shape == (80, 25)


def test_mel_filters_match_transformers():
    from transformers.audio_utils import mel_filter_bank

    for n_mel in (80, 128):
        ref = mel_filter_bank(
            num_frequency_bins=201, num_mel_filters=n_mel, min_frequency=0.0, max_frequency=8000.0,
            sampling_rate=SR, norm="slaney", mel_scale="slaney",
        )
        # Both in double; ours is returned as float32 (measured 1.8e-9 against weights up to 0.042).
        np.testing.assert_allclose(media.mel_filters(n_mel), ref.T, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "pcm, message",
    [
        (np.zeros(0, np.float32), "empty"),
        (np.zeros((2, 1600), np.float32), "mono"),
        (np.array([0.0, np.nan, 0.1], np.float32), "finite"),
        (np.array([0.0, np.inf], np.float32), "finite"),
        (np.zeros(1600, np.int16), "floating"),
    ],
)
def test_log_mel_rejects_bad_audio(pcm, message):
    with pytest.raises(InvalidArgumentError, match=message):
        media.log_mel(pcm)


def test_log_mel_rejects_bad_n_mel_and_short_buffers():
    pcm = _noise(1600, 2)
    for n_mel in (0, -1, 257):
        with pytest.raises(InvalidArgumentError, match="n_mel"):
            media.log_mel(pcm, n_mel=n_mel)
        with pytest.raises(InvalidArgumentError, match="n_mel"):
            media.mel_filters(n_mel)
    n_frames = ffi.new("int64_t *")
    short = np.empty(128 * 10 - 1, np.float32)
    status = lib.om_audio_log_mel(ffi.from_buffer("float[]", pcm), pcm.size, 128, ffi.from_buffer("float[]", short),
                                  short.size, n_frames)
    assert status == lib.OM_STATUS_BUFFER_TOO_SMALL and n_frames[0] == 10
    with pytest.raises(OmnimemError, match="1280 floats"):
        check(status)
    with pytest.raises(InvalidArgumentError, match="NULL"):
        check(lib.om_audio_log_mel(ffi.NULL, 10, 128, ffi.NULL, 0, n_frames))


def _stream_in_pieces(pcm: np.ndarray, sizes, *, n_mel: int = 128) -> np.ndarray:
    """Pushes pcm in pieces of the given sizes until it is all in, taking the frames ready after each piece
    and after finish(); checks the readiness rule on the way. Returns the frames taken, [n_mel, n]."""
    taken = []
    with media.LogMelStream(n_mel=n_mel) as stream:
        start = 0
        for size in sizes:
            if start >= pcm.size:
                break
            stream.push(pcm[start:start + size])
            start = min(start + size, pcm.size)
            # frame t's window reaches sample 160·t + 199, and frame 0's reflection sample 200
            assert stream.n_taken + stream.n_ready == (0 if start <= 200 else (start - 200) // 160 + 1)
            taken.append(stream.take())
        assert start == pcm.size == stream.n_samples
        stream.finish()
        taken.append(stream.take())
        assert stream.n_taken == math.ceil(pcm.size / 160) and stream.n_ready == 0
    return np.concatenate(taken, axis=1)


def _random_pieces(rng: np.random.Generator, first: int):
    """A first piece of the given size, then pieces of 1 to 700 samples: one-sample runs, pieces shorter
    and longer than a hop or a window, most of them ending mid-frame."""
    yield first
    while True:
        if rng.random() < 0.1:
            yield from [1] * int(rng.integers(1, 400))
        else:
            yield int(rng.integers(1, 700))


def _loud_then_quiet(n: int, seed: int) -> np.ndarray:
    """A loud burst in the first 1000 samples, then exact silence (whose bins sit at the floor) and quiet
    noise: the loudest frame lies in the first 2000 samples."""
    pcm = _noise(n, seed) * 0.01
    pcm[:1000] = _noise(1000, seed + 1) * 9
    pcm[n // 2:3 * n // 4] = 0.0
    return pcm


@pytest.mark.parametrize("n", [3 * SR + 77, 2 * SR, 6001])
@pytest.mark.parametrize("seed", range(4))
def test_log_mel_stream_equals_offline_when_the_loudest_frame_comes_first(n, seed):
    pcm = _loud_then_quiet(n, seed)
    offline = media.log_mel(pcm)
    assert (offline == offline.min()).mean() > 0.1  # the silence is clamped: the floor is exercised
    rng = np.random.default_rng(seed)
    ours = _stream_in_pieces(pcm, _random_pieces(rng, int(rng.integers(2000, 2400))))
    np.testing.assert_array_equal(ours, offline)


@pytest.mark.parametrize("n", [1, 159, 160, 199, 200, 201, 359, 360, 361, 4000])
def test_log_mel_stream_one_sample_at_a_time_and_short_clips(n):
    # Noise fills every bin far above the floor, so the order in which frames come cannot matter.
    pcm = _tone(n) + _noise(n, n)
    np.testing.assert_array_equal(_stream_in_pieces(pcm, [1] * n), media.log_mel(pcm))
    np.testing.assert_array_equal(_stream_in_pieces(pcm, [n]), media.log_mel(pcm))
    pcm = _noise(n, 3)
    np.testing.assert_array_equal(_stream_in_pieces(pcm, itertools.cycle([7, 150, 3]), n_mel=80),
                                  media.log_mel(pcm, n_mel=80))


@pytest.mark.parametrize("seed", range(3))
def test_log_mel_stream_louder_later_differs_only_where_offline_clamps(seed):
    # Quiet noise with a silent gap, then a loud burst: frames taken before the burst was computed use a
    # lower floor. They may differ from offline only in bins that offline clamps to its floor, and there
    # they are lower; taking everything after finish() is offline exactly.
    n = 3 * SR
    pcm = _noise(n, seed) * 0.001
    pcm[SR // 4:SR // 2] = 0.0
    pcm[2 * SR:2 * SR + 2000] = _noise(2000, seed + 1) * 9
    offline = media.log_mel(pcm)
    clamped = offline == offline.min()
    rng = np.random.default_rng(seed)
    ours = _stream_in_pieces(pcm, _random_pieces(rng, int(rng.integers(1, 700))))
    assert (ours != offline).any()
    np.testing.assert_array_equal(ours[~clamped], offline[~clamped])
    assert (ours[clamped] <= offline[clamped]).all()
    np.testing.assert_array_equal(_stream_in_pieces(pcm, [n]), offline)


def test_log_mel_stream_floor_counts_frames_past_the_clip():
    # As offline, finish() folds the frames past the valid ones (here the loudest) into the floor.
    pcm = np.zeros(16000, dtype=np.float32)
    pcm[-40:] = 0.9
    with media.LogMelStream() as stream:
        for piece in np.array_split(pcm, 48):
            stream.push(piece)
        stream.finish()
        np.testing.assert_array_equal(stream.take(), media.log_mel(pcm))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads the resident size from /proc")
def test_log_mel_stream_memory_stays_bounded():
    # 20 minutes in 1-second pieces, taken as they come: holding the samples or the frames would keep
    # 77 MB or 61 MB; the stream keeps under 400 samples and the untaken frames.
    piece = _noise(SR, 0)
    with media.LogMelStream() as stream:
        stream.push(piece)
        stream.take()
        before = _rss_bytes()
        for _ in range(20 * 60):
            stream.push(piece)
            assert stream.take().shape[1] in (100, 99, 101)
        assert _rss_bytes() - before < 16 << 20
        assert stream.n_samples == 1201 * SR


def test_log_mel_stream_rejects_misuse():
    with pytest.raises(InvalidArgumentError, match="n_mel"):
        media.LogMelStream(n_mel=0)
    with media.LogMelStream() as stream:
        stream.push(_noise(1000, 0))
        for pcm, message in [(np.array([0.0, np.nan], np.float32), "sample 1001 is nan.*finite"),
                             (np.zeros((2, 10), np.float32), "mono"), (np.zeros(10, np.int16), "floating")]:
            with pytest.raises(InvalidArgumentError, match=message):
                stream.push(pcm)
        assert stream.n_samples == 1000  # a refused piece leaves the stream as it was
        with pytest.raises(InvalidArgumentError, match="cannot take 7 log-mel frames, 6 are ready"):
            stream.take(7)
        with pytest.raises(InvalidArgumentError, match="cannot take -1"):
            stream.take(-1)
        assert stream.take(2).shape == (128, 2) and stream.n_ready == 4
        stream.finish()
        stream.finish()
        assert stream.n_ready == 5  # 7 frames in all
        with pytest.raises(InvalidArgumentError, match="finished"):
            stream.push(_noise(10, 1))
    with pytest.raises(InvalidArgumentError, match="closed"):
        stream.take()
    with media.LogMelStream() as empty:
        empty.finish()
        assert empty.take().shape == (128, 0)


def test_log_mel_stream_c_api_checks_handles_and_buffers():
    out = ffi.new("om_log_mel_stream **")
    with pytest.raises(InvalidArgumentError, match="NULL"):
        check(lib.om_log_mel_stream_init(128, ffi.NULL))
    check(lib.om_log_mel_stream_init(128, out))
    stream = out[0]
    try:
        pcm = _noise(1000, 0)
        with pytest.raises(InvalidArgumentError, match="pcm is NULL"):
            check(lib.om_log_mel_stream_push(stream, ffi.NULL, 10))
        check(lib.om_log_mel_stream_push(stream, ffi.NULL, 0))
        check(lib.om_log_mel_stream_push(stream, ffi.from_buffer("float[]", pcm), pcm.size))
        assert lib.om_log_mel_stream_n_ready(stream) == 6
        short = np.empty(128 * 3 - 1, np.float32)
        status = lib.om_log_mel_stream_take(stream, 3, ffi.from_buffer("float[]", short), short.size)
        assert status == lib.OM_STATUS_BUFFER_TOO_SMALL and lib.om_log_mel_stream_n_ready(stream) == 6
        with pytest.raises(OmnimemError, match="384 floats"):
            check(status)
    finally:
        lib.om_log_mel_stream_free(stream)
    lib.om_log_mel_stream_free(ffi.NULL)
    assert lib.om_log_mel_stream_n_ready(ffi.NULL) == lib.om_log_mel_stream_n_taken(ffi.NULL) == 0
    for call in (lambda: lib.om_log_mel_stream_finish(ffi.NULL),
                 lambda: lib.om_log_mel_stream_take(ffi.NULL, 0, ffi.NULL, 0)):
        with pytest.raises(InvalidArgumentError, match="stream is NULL"):
            check(call())


# --- images and video frames --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_processor():
    """transformers' slow Qwen2VLImageProcessor (PIL resampling, no torchvision) with the Qwen2.5-Omni
    image limits."""
    pytest.importorskip("PIL", reason="the slow Qwen2VLImageProcessor resizes with Pillow")
    from transformers import Qwen2VLImageProcessor

    return Qwen2VLImageProcessor(**media.IMAGE_PIXELS)


def _reference_image(processor, rgb: np.ndarray):
    out = processor(images=rgb, return_tensors="np", input_data_format="channels_last")
    return out["pixel_values"], tuple(int(v) for v in out["image_grid_thw"][0])


def _reference_video(processor, frames: np.ndarray):
    out = processor(images=None, videos=[list(frames)], return_tensors="np", input_data_format="channels_last",
                    **media.VIDEO_PIXELS)
    return out["pixel_values_videos"], tuple(int(v) for v in out["video_grid_thw"][0])


def _test_image(h: int, w: int, seed: int) -> np.ndarray:
    """Noise over smooth gradients: the noise exercises every rounding, the gradients the kernel's shape."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([yy * 255 // max(h - 1, 1), xx * 255 // max(w - 1, 1), (yy + xx) * 127 // max(h + w - 2, 1)], -1)
    return np.clip(smooth + rng.integers(-40, 41, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [(308, 336), (56, 84), (84, 56), (448, 252)])
def test_image_patches_match_processor_without_resize(image_processor, size):
    rgb = _test_image(*size, seed=size[0])
    ref, ref_grid = _reference_image(image_processor, rgb)
    ours, grid = media.image_patches(rgb)
    assert grid == ref_grid == (1, size[0] // 14, size[1] // 14)
    assert ours.shape == ref.shape == (size[0] * size[1] // 196, 1176)
    # Same float32 operations in the same order: measured identical.
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
    # A still image fills both temporal slots of every patch.
    slots = ours.reshape(-1, 3, 2, 196)
    np.testing.assert_array_equal(slots[:, :, 0], slots[:, :, 1])


@pytest.mark.parametrize("size", [(170, 230), (1000, 700), (1, 1), (29, 29), (33, 2000), (720, 1280)])
def test_image_resize_matches_processor(image_processor, size):
    # Up- and downscales (1000×700 → 1008×700 … 720×1280 → 728×1288; 1×1 → 56×56). Our resampler uses the
    # same kernel, support scaling, 22-bit fixed-point weights and 8-bit intermediate rounding as PIL:
    # measured identical pixels, so the tolerance stays at float rounding. A failure here means the
    # installed Pillow changed its resampler.
    rgb = _test_image(*size, seed=7)
    ref, ref_grid = _reference_image(image_processor, rgb)
    ours, grid = media.image_patches(rgb)
    assert grid == ref_grid
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_image_downscale_to_max_pixels(image_processor):
    rgb = _test_image(1000, 700, seed=3)
    limits = {"min_pixels": 3136, "max_pixels": 200 * 28 * 28}
    image_processor_small = type(image_processor)(**limits)
    ref, ref_grid = _reference_image(image_processor_small, rgb)
    ours, grid = media.image_patches(rgb, **limits)
    assert grid == ref_grid and grid[1] * grid[2] <= 4 * 200
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("n_frames, size", [(4, (308, 336)), (3, (308, 336)), (2, (360, 640))])
def test_video_patches_match_processor(image_processor, n_frames, size):
    # 308×336 lies within the video limits (not resized); 3 frames pair the last with itself; 360×640 is
    # resized to the video budget.
    frames = np.stack([_test_image(*size, seed=10 + i) for i in range(n_frames)])
    ref, ref_grid = _reference_video(image_processor, frames)
    ours, grid = media.image_patches(frames, **media.VIDEO_PIXELS)
    assert grid == ref_grid and grid[0] == (n_frames + 1) // 2
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_smart_resize_matches_transformers():
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    rng = np.random.default_rng(0)
    sizes = [(int(h), int(w)) for h, w in rng.integers(1, 4000, (1500, 2))]
    sizes += [(int(h), int(w)) for h, w in np.exp(rng.uniform(0, np.log(20000), (500, 2))).astype(int) + 1]
    # halves round to even (14 → 0, 42 → 56, 70 → 56), tiny images, extreme but allowed aspect ratios
    sizes += [(14, 14), (42, 70), (70, 42), (98, 126), (1, 1), (1, 200), (200, 1), (28, 5600), (3, 600)]
    for limits in (media.IMAGE_PIXELS, media.VIDEO_PIXELS, {"min_pixels": 784, "max_pixels": 784}):
        for h, w in sizes:
            try:
                ref = smart_resize(h, w, factor=28, **limits)
            except ValueError:
                with pytest.raises(InvalidArgumentError, match="aspect"):
                    media.smart_resize(h, w, **limits)
                continue
            assert media.smart_resize(h, w, **limits) == ref, (h, w, limits)


@pytest.mark.parametrize(
    "frames, message",
    [
        (np.zeros((64, 64), np.uint8), "RGB"),
        (np.zeros((64, 64, 4), np.uint8), "RGB"),
        (np.zeros((2, 64, 64, 1), np.uint8), "RGB"),
        (np.zeros((64, 64, 3), np.float32), "uint8"),
        (np.zeros((0, 64, 3), np.uint8), "at least 1 px"),
        (np.zeros((0, 64, 64, 3), np.uint8), "no frames"),
        (np.zeros((1, 201, 3), np.uint8), "aspect"),
    ],
)
def test_image_patches_reject_bad_frames(frames, message):
    with pytest.raises(InvalidArgumentError, match=message):
        media.image_patches(frames)


def test_image_c_api_checks_sizes_and_buffers():
    rgb = np.zeros((1, 56, 56, 3), np.uint8)
    rgb_c = ffi.from_buffer("uint8_t[]", rgb)
    grid = ffi.new("int32_t[3]")
    short = np.empty(16 * 1176 - 1, np.float32)
    status = lib.om_image_patches(rgb_c, 1, 56, 56, 56, 56, ffi.from_buffer("float[]", short), short.size, grid)
    assert status == lib.OM_STATUS_BUFFER_TOO_SMALL and list(grid) == [1, 4, 4]
    with pytest.raises(OmnimemError, match="18816 floats"):
        check(status)
    for rh, rw in ((50, 56), (0, 56), (56, -28)):
        with pytest.raises(InvalidArgumentError, match="multiples of 28"):
            check(lib.om_image_patches(rgb_c, 1, 56, 56, rh, rw, ffi.NULL, 0, grid))
    with pytest.raises(InvalidArgumentError, match="at least one frame"):
        check(lib.om_image_patches(rgb_c, 0, 56, 56, 56, 56, ffi.NULL, 0, grid))
    with pytest.raises(InvalidArgumentError, match="NULL"):
        check(lib.om_image_patches(ffi.NULL, 1, 56, 56, 56, 56, ffi.NULL, 0, grid))
    h, w = ffi.new("int32_t *"), ffi.new("int32_t *")
    with pytest.raises(InvalidArgumentError, match="min_pixels"):
        check(lib.om_image_smart_resize(100, 100, 1000, 10, h, w))
