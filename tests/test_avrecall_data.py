"""AV-Recall data: determinism, the token ratio, answers recomputed from the events, the question mix, and
that generated chunks and mp4 files go through the real media path and stream."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from omnimem_cpp.avrecall import (  # noqa: E402
    AVRecallConfig,
    AVRecallStream,
    answer_vocabulary,
    family_counts,
    all_questions,
    Timeline,
    write_mp4,
)

SHORT = dict(seconds=600.0, n_questions=40)


@pytest.fixture(scope="module")
def stream():
    return AVRecallStream(AVRecallConfig(seed=7, **SHORT))


def test_same_seed_same_stream_and_questions():
    a, b = AVRecallStream(AVRecallConfig(seed=3, **SHORT)), AVRecallStream(AVRecallConfig(seed=3, **SHORT))
    assert [e.to_dict() for e in a.events] == [e.to_dict() for e in b.events]
    assert [q.to_dict() for q in a.questions] == [q.to_dict() for q in b.questions]
    for i in (0, 57, a.n_chunks - 1):        # any chunk, in any order, renders the same
        ca, cb = a.chunk(i), b.chunk(i)
        assert np.array_equal(ca.video, cb.video) and np.array_equal(ca.audio, cb.audio)
    c = AVRecallStream(AVRecallConfig(seed=4, **SHORT))
    assert [e.to_dict() for e in a.events] != [e.to_dict() for e in c.events]
    assert not np.array_equal(a.chunk(0).audio, c.chunk(0).audio)


def test_config_round_trips_through_json():
    cfg = AVRecallConfig(seed=5, seconds=90.5, question_mix={"audio": 1, "visual": 1, "cross": 2})
    assert AVRecallConfig.from_json(cfg.to_json()) == cfg
    json.loads(cfg.to_json())


def test_visual_tokens_outnumber_audio_four_to_one():
    cfg = AVRecallConfig()
    # Qwen2.5-Omni: (H/28)*(W/28) tokens per 2 frames, 25 audio tokens per second
    visual_per_second = (cfg.height / 28) * (cfg.width / 28) * cfg.fps / 2
    assert cfg.height % 28 == 0 and cfg.width % 28 == 0
    assert visual_per_second / 25 >= 4.0
    assert cfg.token_ratio == pytest.approx(visual_per_second / 25)
    chunk = AVRecallStream(AVRecallConfig(seconds=4.0, n_questions=0)).chunk(0)
    assert chunk.video.shape == (4, cfg.height, cfg.width, 3)


def test_chunks_are_real_media_of_the_right_shape(stream):
    cfg = stream.config
    assert stream.n_chunks == 300
    chunk = stream.chunk(10)
    assert chunk.video.dtype == np.uint8 and chunk.video.shape == (4, cfg.height, cfg.width, 3)
    assert chunk.audio.dtype == np.float32 and chunk.audio.shape == (32000,)
    assert (chunk.fps, chunk.sample_rate, chunk.start) == (2.0, 16000, 20.0)
    odd = AVRecallStream(AVRecallConfig(seconds=5.0, n_questions=0))
    assert [c.video.shape[0] for c in odd] == [4, 4, 2] and [c.audio.size for c in odd] == [32000, 32000, 16000]
    # redundant video: consecutive frames without an event differ only by sensor noise
    diff = np.abs(chunk.video[1].astype(int) - chunk.video[0].astype(int))
    assert diff.max() <= 6


def test_sound_events_are_audible(stream):
    sound = next(e for e in stream.events if e.kind == "sound")
    chunk = stream.chunk(int(sound.time // 2))
    offset = round((sound.time - chunk.start) * 16000)
    during = chunk.audio[offset:offset + 8000]
    quiet = AVRecallStream(AVRecallConfig(seed=7, seconds=600.0, sound_events_per_minute=0, n_questions=0))
    before = quiet.chunk(int(sound.time // 2)).audio[offset:offset + 8000]
    assert np.sqrt(np.mean(during ** 2)) > 5 * np.sqrt(np.mean(before ** 2))


# --- answers recomputed from the event list alone --------------------------------------------------------

def replay(events, t):
    """shape -> (colour, slot) after every visual event at or before t."""
    state = {}
    for e in events:
        if e["modality"] == "visual" and e["time"] <= t:
            if e["kind"] == "disappear":
                state.pop(e["object"])
            else:
                state[e["object"]] = (e["colour"], e["slot"])
    return state


def expected_answer(q, events):
    p = q["params"]
    sounds = [e for e in events if e["kind"] == "sound"]
    appears = [e for e in events if e["kind"] == "appear"]
    first_sound, first_appear = {}, {}
    for e in sounds:
        first_sound.setdefault(e["symbol"], e)
    for e in appears:
        first_appear.setdefault(e["object"], e)

    kind = q["kind"]
    if kind == "sound_played":
        return "yes" if p["symbol"] in first_sound else "no"
    if kind == "sound_count":
        return str(sum(e["symbol"] == p["symbol"] for e in sounds))
    if kind == "sound_order":
        return min(p["symbols"], key=lambda s: first_sound[s]["time"])
    if kind == "object_appeared":
        return "yes" if p["object"] in first_appear else "no"
    if kind == "appear_colour":
        return first_appear[p["object"]]["colour"]
    if kind == "appear_order":
        return min(p["objects"], key=lambda o: first_appear[o]["time"])
    if kind in ("colour_at_sound", "count_at_sound"):
        e = first_sound[p["symbol"]]
        # the scene holds still over the whole sound
        assert replay(events, e["time"]) == replay(events, e["time"] + e["duration"])
        state = replay(events, e["time"])
        return state[p["object"]][0] if kind == "colour_at_sound" else str(len(state))
    if kind == "sound_or_object_first":
        a, b = first_sound[p["symbol"]]["time"], first_appear[p["object"]]["time"]
        assert a != b
        return p["symbol"] if a < b else p["object"]
    raise AssertionError(f"unknown kind {kind}")


@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_every_answer_follows_from_the_events(seed):
    s = AVRecallStream(AVRecallConfig(seed=seed, **SHORT))
    events = json.loads(json.dumps([e.to_dict() for e in s.events]))
    vocabulary = set(answer_vocabulary(s.config))
    every = all_questions(s.config, s.timeline)
    for q in every:
        d = q.to_dict()
        assert d["answer"] == expected_answer(d, events), d
        assert d["answer"] in vocabulary and " " not in d["answer"]
        assert 0 <= d["ask_after"] <= s.config.seconds
        for name in [d["params"].get("symbol"), d["params"].get("object"), *d["params"].get("symbols", []),
                     *d["params"].get("objects", [])]:
            assert name is None or name in d["text"]
    assert len({q.text for q in every}) == len(every)
    assert {q.to_dict()["text"] for q in s.questions} <= {q.text for q in every}
    assert len({q.kind for q in s.questions}) >= 8       # the question kinds are all in use, not one or two


def test_event_spacing(stream):
    cfg = stream.config
    for modality in ("visual", "audio"):
        times = [e.time for e in stream.events if e.modality == modality]
        assert times and np.diff(times).min() >= cfg.min_event_gap
    visual = np.array([e.time for e in stream.events if e.modality == "visual"])
    for e in stream.events:
        if e.kind == "sound":
            assert not ((visual > e.time - cfg.cross_modal_gap) &
                        (visual < e.time + e.duration + cfg.cross_modal_gap)).any()


@pytest.mark.parametrize("rate, gap, cross_gap", [(24.0, 2.0, 1.0), (12.0, 2.5, 1.25), (3.0, 6.0, 2.0)])
def test_dense_streams_keep_their_sounds(rate, gap, cross_gap):
    """A sound too close to a visual change moves to the next clear second instead of vanishing, so the
    sound rate holds up when visual changes are dense (dropping them left 24-a-minute streams with a sixth
    of their sounds); the spacing rules still hold."""
    counts = []
    for seed in range(10):
        cfg = AVRecallConfig(seconds=120.0, seed=seed, visual_events_per_minute=rate, sound_events_per_minute=rate,
                             min_event_gap=gap, cross_modal_gap=cross_gap, n_questions=0)
        tl = Timeline(cfg)
        sounds = [e.time for e in tl.sounds()]
        visual = np.array([e.time for e in tl.visual_events()])
        assert len(sounds) < 2 or np.diff(sounds).min() >= max(gap, cfg.sound_seconds + 1.0)
        assert all(not ((visual > t - cross_gap) & (visual < t + cfg.sound_seconds + cross_gap)).any() for t in sounds)
        counts.append(len(sounds))
    # the highest rate the spacing allows is one sound per (gap + a clear stretch); at least half the rate asked
    assert np.mean(counts) / 2.0 >= min(rate, 60.0 / (gap + 1.0 + 2 * cross_gap)) / 2


def test_objects_and_sounds_introduced_over_the_stream_spread_the_firsts_over_it():
    """With ``introduce_over``, no object and no sound occurs before its introduction, the introductions
    step evenly over that share of the stream, and the first appearances and first sounds (what most
    questions are about) spread over it instead of crowding its first minutes; the answers still follow
    from the events."""
    firsts, firsts_before = [], []
    for seed in range(3):
        cfg = AVRecallConfig(seconds=1200.0, seed=seed, n_questions=48, introduce_over=0.8)
        s = AVRecallStream(cfg)
        introduced = s.timeline.introduced
        for names in (cfg.objects, cfg.symbols):
            steps = sorted(introduced[n] for n in names)
            assert steps == pytest.approx([0.8 * 1200 * k / len(names) for k in range(len(names))])
        for e in s.events:
            assert e.time >= introduced[e.object if e.modality == "visual" else e.symbol]
        events = json.loads(json.dumps([e.to_dict() for e in s.events]))
        for q in all_questions(cfg, s.timeline):
            assert q.answer == expected_answer(q.to_dict(), events)
        first = {}
        for e in s.events:
            first.setdefault(e.object if e.modality == "visual" else e.symbol, e.time)
        firsts += first.values()
        before = Timeline(AVRecallConfig(seconds=1200.0, seed=seed, n_questions=0))
        assert before.introduced == {}
        first = {}
        for e in before.events:
            first.setdefault(e.object if e.modality == "visual" else e.symbol, e.time)
        firsts_before += first.values()
    assert np.median(firsts_before) < 180 and np.median(firsts) > 400     # half in 3 minutes; half after 6
    with pytest.raises(ValueError, match="introduce_over"):
        AVRecallConfig(introduce_over=1.5)


@pytest.mark.parametrize("mix", [{"audio": 0.3, "visual": 0.4, "cross": 0.3},
                                 {"audio": 1.0, "visual": 0.0, "cross": 1.0},
                                 {"audio": 0.2, "visual": 0.2, "cross": 0.6}])
def test_question_mix(mix):
    cfg = AVRecallConfig(seed=11, seconds=600.0, n_questions=50, question_mix=mix)
    got = {f: 0 for f in mix}
    for q in AVRecallStream(cfg).questions:
        got[q.family] += 1
    total = sum(mix.values())
    assert got == family_counts(cfg)
    for f, share in mix.items():
        assert abs(got[f] - share / total * 50) < 1


# --- through the real pipeline ----------------------------------------------------------------------------

def test_chunks_stream_through_the_model(stream):
    import omnimem_cpp as om
    data = Path(om.__file__).parent / "data"
    with om.Model(data / "avrecall-text.gguf", mmproj=data / "avrecall-mmproj.gguf", n_threads=1) as model:
        with model.stream() as s:
            for i in range(3):
                chunk = stream.chunk(i)
                s.feed(video=chunk.video, audio=chunk.audio, fps=chunk.fps)
            s.close_media()
            assert s.n_tokens > 3 * 2 * 25     # at least the audio tokens of three chunks


def test_mp4_opens_and_yields_the_chunks(tmp_path):
    import omnimem_cpp as om
    cfg = AVRecallConfig(seed=2, seconds=10.0, n_questions=0, visual_events_per_minute=30, min_event_gap=3)
    generated = AVRecallStream(cfg)
    path = write_mp4(generated, tmp_path / "avrecall.mp4")
    with om.media.open(path) as reader:
        assert (reader.width, reader.height) == (cfg.width, cfg.height)
        chunks = list(reader)
    assert len(chunks) == math.ceil(cfg.seconds / cfg.chunk_seconds)
    for got in chunks:
        assert got.video.shape == (4, cfg.height, cfg.width, 3)
        want = generated.chunk(got.index)
        # lossy codecs: the picture is close on average, the audio keeps its loudness
        assert np.abs(got.video.astype(int) - want.video.astype(int)).mean() < 12
        assert got.audio.size == pytest.approx(want.audio.size, abs=1)


def test_slot_cover_holds_every_drawn_pixel_of_its_slot():
    """The cells a slot covers, by share, add up to its box; every pixel the objects change (a drawn frame
    against its scene's bare background) lies in a cell of an occupied slot, and each occupied slot changes
    pixels in cells it covers at least half."""
    from omnimem_cpp.avrecall.config import PATCH_PIXELS

    cfg = AVRecallConfig(seed=5, seconds=60.0, n_questions=0, visual_events_per_minute=20, min_event_gap=2)
    stream = AVRecallStream(cfg)
    cover = stream.slot_cover()
    assert list(cover) == list(cfg.slots)
    for share in cover.values():
        assert share.shape == (cfg.height // PATCH_PIXELS, cfg.width // PATCH_PIXELS)
        assert share.min() >= 0 and share.max() == 1
        assert share.sum() * PATCH_PIXELS ** 2 == pytest.approx(stream._box ** 2)
    seen = set()
    for t in np.arange(0, cfg.seconds, 0.5):
        occupied = {slot for _, slot in stream.timeline.state_at(t).values()}
        bare = stream._background(stream.timeline.scene_at(t))
        changed = np.abs(stream._drawn_frame(t) - bare).max(-1) > 0
        cells = changed.reshape(cover[cfg.slots[0]].shape[0], PATCH_PIXELS, -1, PATCH_PIXELS).any(axis=(1, 3))
        assert (sum((cover[s] > 0 for s in occupied), np.zeros_like(cells)) > 0)[cells].all()
        for slot in occupied:
            assert (cells & (cover[slot] >= 0.5)).sum() >= 4
        seen |= occupied
    assert seen == set(cfg.slots)
