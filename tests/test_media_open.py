"""om.media.open on media files written here with PyAV: chunking, frame sampling, resampling, errors.

Every video frame is one solid colour that encodes its index (red and green digits in base 16, 16 levels
apart, so codec blur of a few levels cannot turn one index into another), and every audio track is a tone
whose frequency steps up by 100 Hz each second, so a chunk can be traced back to the source frames and
seconds it came from.
"""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

import omnimem_cpp as om
from omnimem_cpp import InvalidArgumentError, MediaError, OmnimemError

SR = 16000


def frame_colour(index: int) -> tuple[int, int, int]:
    return 16 * (index % 16) + 8, 16 * (index // 16) + 8, 128


def frame_index(rgb: np.ndarray) -> int:
    """The source index a decoded frame encodes, read from its mean colour."""
    r, g = rgb[..., 0].mean(), rgb[..., 1].mean()
    return int(round((r - 8) / 16)) + 16 * int(round((g - 8) / 16))


def tone(seconds: float, rate: int) -> np.ndarray:
    """0.5-amplitude sine of 300 Hz in second 0, 400 Hz in second 1, …, with a continuous phase."""
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * np.cumsum(300 + 100 * np.floor(t)) / rate)).astype(np.float32)


def peak_hz(pcm: np.ndarray, rate: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(pcm.size)))
    return float(np.argmax(spectrum)) * rate / pcm.size


def write_media(path, *, seconds, video_codec=None, fps=25, audio_codec=None, rate=44100, pcm=None,
                audio_start=0.0, cover_art=False):
    """Writes ``seconds`` of colour-coded 64×48 frames at ``fps`` and/or the audio ``pcm`` ([channels, n],
    default: the stepped tone in stereo), the audio starting ``audio_start`` seconds in."""
    with av.open(str(path), "w") as container:
        video = None
        if video_codec is not None:
            video = container.add_stream(video_codec, rate=fps)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        if cover_art:
            video = container.add_stream("mjpeg", rate=1)
            video.width, video.height, video.pix_fmt = 32, 32, "yuvj420p"
            video.disposition = av.stream.Disposition.attached_pic
        audio = None
        if audio_codec is not None:
            if pcm is None:
                pcm = np.stack([tone(seconds, rate)] * 2)
            layout = {1: "mono", 2: "stereo"}[pcm.shape[0]]
            audio = container.add_stream(audio_codec, rate=rate, layout=layout)
        if video is not None:
            for i in range(1 if cover_art else round(seconds * fps)):
                frame = np.empty((video.height, video.width, 3), np.uint8)
                frame[:] = frame_colour(i)
                for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in video.encode():
                container.mux(packet)
        if audio is not None:
            offset = round(audio_start * rate)
            for start in range(0, pcm.shape[1], 1024):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, start:start + 1024]), format="fltp",
                                                   layout=layout)
                frame.sample_rate, frame.pts = rate, offset + start
                for packet in audio.encode(frame):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)
    return path


def read_all(source, **kw):
    with om.media.open(source, **kw) as reader:
        return reader, list(reader)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """5.3 s of H.264 at 25 fps with a stereo AAC track at 44.1 kHz."""
    return write_media(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=5.3, video_codec="h264",
                       audio_codec="aac")


def test_mp4_chunks_frames_and_audio(clip):
    reader, chunks = read_all(clip)
    assert reader.duration == pytest.approx(5.3, abs=0.05)
    assert (reader.has_video, reader.has_audio, reader.width, reader.height) == (True, True, 64, 48)
    assert reader.n_chunks == len(chunks) == 3
    assert [c.index for c in chunks] == [0, 1, 2]
    assert [c.start for c in chunks] == [0.0, 2.0, 4.0]
    assert all((c.fps, c.sample_rate) == (2.0, SR) for c in chunks)

    # Sample k at k/2 s takes the latest frame at or before it: 0.5 s falls between frames 12 (0.48 s) and 13.
    assert [[frame_index(f) for f in c.video] for c in chunks] == [
        [0, 12, 25, 37], [50, 62, 75, 87], [100, 112, 125]]
    for c in chunks:
        assert c.video.dtype == np.uint8 and c.video.shape[1:] == (48, 64, 3) and c.video.flags.c_contiguous
        assert c.audio.dtype == np.float32 and c.audio.ndim == 1
    # The AAC encoder's padding past 5.3 s is cut at the track's declared length.
    assert [c.audio.size for c in chunks] == [32000, 32000, 20800]

    pcm = np.concatenate([c.audio for c in chunks])
    for second in range(5):  # the middle of each second, away from the frequency steps
        window = pcm[second * SR + 1600: second * SR + 14400]
        assert peak_hz(window) == pytest.approx(300 + 100 * second, abs=3)
    assert np.abs(pcm).max() == pytest.approx(0.5, abs=0.05)  # the mix of identical channels is either one


@pytest.mark.parametrize("name, video_codec, fps, audio_codec, rate", [
    ("mpeg4.mp4", "mpeg4", 10, None, None),  # frames land exactly on the sample times
    ("vp9-opus.mkv", "libvpx-vp9", 25, "libopus", 48000),
    ("vp8-opus.webm", "libvpx", 25, "libopus", 48000),
    ("h264-pcm.mov", "h264", 30, "pcm_s16le", 22050),
])
def test_containers_and_codecs(tmp_path, name, video_codec, fps, audio_codec, rate):
    path = write_media(tmp_path / name, seconds=4.7, video_codec=video_codec, fps=fps, audio_codec=audio_codec,
                       rate=rate)
    reader, chunks = read_all(path)
    assert reader.duration == pytest.approx(4.7, abs=0.05)
    assert reader.has_audio == (audio_codec is not None)
    assert [len(c.video) for c in chunks] == [4, 4, 2]
    expected = [int(k / 2 * fps + 1e-6) for k in range(10)]
    assert [frame_index(f) for c in chunks for f in c.video] == expected
    if audio_codec is None:
        assert all(c.audio is None for c in chunks)
    else:
        assert [c.audio.size for c in chunks][:2] == [32000, 32000]
        assert chunks[2].audio.size == pytest.approx(0.7 * SR, abs=0.02 * SR)
        pcm = np.concatenate([c.audio for c in chunks])
        assert peak_hz(pcm[3 * SR + 1600: 3 * SR + 14400]) == pytest.approx(600, abs=3)


@pytest.mark.parametrize("name, codec, exact", [
    ("tone.wav", "pcm_s16le", True),
    ("tone.flac", "flac", True),
    ("tone.mp3", "libmp3lame", False),  # MP3 frames and encoder delay blur the length by a few ms
])
def test_audio_only_44k_resampled(tmp_path, name, codec, exact):
    path = write_media(tmp_path / name, seconds=5.3, audio_codec=codec, pcm=tone(5.3, 44100)[np.newaxis])
    reader, chunks = read_all(path)
    assert (reader.has_video, reader.width, reader.height) == (False, None, None)
    assert reader.duration == pytest.approx(5.3, abs=0.05) and reader.n_chunks == len(chunks) == 3
    assert all(c.video is None for c in chunks)
    sizes = [c.audio.size for c in chunks]
    assert sizes[:2] == [32000, 32000]
    assert sizes[2] == 20800 if exact else sizes[2] == pytest.approx(20800, abs=0.05 * SR)
    pcm = np.concatenate([c.audio for c in chunks])
    for second in range(5):
        assert peak_hz(pcm[second * SR + 1600: second * SR + 14400]) == pytest.approx(300 + 100 * second, abs=3)


def test_cover_art_is_not_video(tmp_path):
    path = write_media(tmp_path / "song.mp3", seconds=2.5, audio_codec="libmp3lame", pcm=tone(2.5, 44100)[None],
                       cover_art=True)
    reader, chunks = read_all(path)
    assert (reader.has_video, reader.has_audio) == (False, True)
    assert len(chunks) == 2 and all(c.video is None for c in chunks)


def test_stereo_downmix(tmp_path):
    t = np.arange(2 * 44100) / 44100
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    opposite = write_media(tmp_path / "opposite.wav", seconds=2, audio_codec="pcm_s16le",
                           pcm=np.stack([left, -left]).astype(np.float32))
    (chunk,) = read_all(opposite)[1]
    assert chunk.audio.size == 32000 and np.abs(chunk.audio).max() < 1e-3  # mono is the channels' average

    right = 0.5 * np.sin(2 * np.pi * 1000 * t)
    two_tones = write_media(tmp_path / "two.wav", seconds=2, audio_codec="pcm_s16le",
                            pcm=np.stack([left, right]).astype(np.float32))
    (chunk,) = read_all(two_tones)[1]
    spectrum = np.abs(np.fft.rfft(chunk.audio)) / (chunk.audio.size / 2)  # amplitudes, in 0.5 Hz bins
    assert spectrum[880] == pytest.approx(0.25, rel=0.05)  # each channel at half its amplitude
    assert spectrum[2000] == pytest.approx(0.25, rel=0.05)


def test_chunk_seconds_fps_and_rate(clip):
    reader, chunks = read_all(clip, chunk_seconds=1.5, fps=1.0, sample_rate=8000)
    assert reader.n_chunks == len(chunks) == 4
    assert [c.start for c in chunks] == [0.0, 1.5, 3.0, 4.5]
    assert [[frame_index(f) for f in c.video] for c in chunks] == [[0, 25], [50], [75, 100], [125]]
    assert [c.audio.size for c in chunks] == [12000, 12000, 12000, 6400]
    assert all((c.fps, c.sample_rate) == (1.0, 8000) for c in chunks)


def test_late_audio_track_is_padded_with_silence(tmp_path):
    path = write_media(tmp_path / "late.mkv", seconds=3, video_codec="libvpx-vp9", audio_codec="pcm_s16le",
                       rate=SR, pcm=np.full((1, 2 * SR), 0.5, np.float32), audio_start=1.0)
    pcm = np.concatenate([c.audio for c in read_all(path)[1]])
    assert pcm.size == 3 * SR
    assert np.abs(pcm[:SR - 160]).max() < 1e-3 and np.abs(pcm[SR + 160:] - 0.5).max() < 1e-3


def test_video_without_audio_track_and_partial_last_chunk(tmp_path):
    path = write_media(tmp_path / "silent.mp4", seconds=2.2, video_codec="h264", fps=25)
    reader, chunks = read_all(path)
    assert not reader.has_audio
    assert [(c.index, len(c.video), c.audio) for c in chunks] == [(0, 4, None), (1, 1, None)]


def test_decoding_is_lazy(tmp_path):
    """The first chunk of a 30 s file arrives after reading a small part of it."""
    data = write_media(tmp_path / "long.mkv", seconds=30, video_codec="libvpx-vp9", fps=5,
                       audio_codec="pcm_s16le", rate=SR, pcm=tone(30, SR)[np.newaxis]).read_bytes()

    class CountingReader(io.BytesIO):
        bytes_read = 0

        def read(self, size=-1):
            out = super().read(size)
            CountingReader.bytes_read += len(out)
            return out

    source = CountingReader(data)
    with om.media.open(source) as reader:
        assert reader.duration == pytest.approx(30, abs=0.05)
        first = next(reader)
        assert first.index == 0 and len(first.video) == 4
        assert source.bytes_read < len(data) / 4
    with pytest.raises(StopIteration):  # a closed reader yields nothing more
        next(reader)


def test_errors(tmp_path):
    assert issubclass(MediaError, OmnimemError) and issubclass(MediaError, ValueError)
    with pytest.raises(MediaError, match="no such file"):
        om.media.open(tmp_path / "missing.mp4")

    text = tmp_path / "notes.mp4"
    text.write_text("these are meeting notes, not a video\n" * 20)
    with pytest.raises(MediaError, match="not a media file"):
        om.media.open(text)

    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="not a media file"):
        om.media.open(empty)

    subtitles = tmp_path / "captions.srt"  # FFmpeg opens it, but it holds one subtitle track only
    subtitles.write_text("1\n00:00:01,000 --> 00:00:02,000\nHello\n\n")
    with pytest.raises(MediaError, match="neither a video nor an audio track"):
        om.media.open(subtitles)

    for kw in ({"chunk_seconds": 0}, {"fps": -2.0}, {"sample_rate": 0}, {"fps": float("nan")}):
        with pytest.raises(InvalidArgumentError):
            om.media.open(subtitles, **kw)


def test_chunk_repr_is_short(clip):
    with om.media.open(clip) as reader:
        assert repr(next(reader)) == "Chunk(index=0, start=0, video=[4, 48, 64, 3], audio=[32000])"
        assert "duration=5.3" in repr(reader)
