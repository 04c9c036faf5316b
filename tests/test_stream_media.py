"""Streaming media against transformers on the whole clip: a video with its audio track (or audio alone, or a
still image) fed in pieces of any size, then a question, gives the logits transformers computes for the
same clip in one prompt — the contract that makes bounded memory meaningful later."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import omnimem_cpp as om
from omnimem_cpp import media

CHUNK_TOKENS = 50   # TMRoPE positions per 2-second chunk


@pytest.fixture(scope="module")
def model(tiny_multimodal):
    return tiny_multimodal


def clip(seconds: float, n_frames: int, seed: int = 0):
    """Random 112x140 frames and a tone whose loudest moment is at the start (so a stream's running
    log-mel floor equals the whole clip's from the first chunk on)."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n_frames, 112, 140, 3), dtype=np.uint8)
    t = np.arange(int(seconds * 16000)) / 16000
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.normal(size=t.size)).astype(np.float32)
    pcm[:4000] *= 3.0
    return frames, pcm


def reference_logits(ref, ids, tokens, *, frames=None, pcm=None, image=None):
    """transformers' thinker on the whole clip, its inputs from our preprocessing (which equals its
    processor's, tests/test_media_preprocess.py)."""
    kw = {}
    if pcm is not None:
        mel = media.log_mel(pcm)
        kw.update(input_features=torch.from_numpy(mel)[None], feature_attention_mask=torch.ones(1, mel.shape[1],
                                                                                              dtype=torch.long))
    if frames is not None:
        patches, grid = media.image_patches(frames, **media.VIDEO_PIXELS)
        kw.update(pixel_values_videos=torch.from_numpy(patches), video_grid_thw=torch.tensor([grid]),
                  video_second_per_grid=torch.tensor([1.0]), use_audio_in_video=pcm is not None)
    if image is not None:
        patches, grid = media.image_patches(image)
        kw.update(pixel_values=torch.from_numpy(patches), image_grid_thw=torch.tensor([grid]))
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        return ref(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kw).logits[0].numpy()


def av_layout(tokens, n_video_per_chunk, n_audio_per_chunk):
    """<|vision_bos|><|audio_bos|> V0 A0 V1 A1 ... <|audio_eos|><|vision_eos|>, as transformers expects it."""
    ids = [tokens["<|vision_bos|>"], tokens["<|audio_bos|>"]]
    for nv, na in zip(n_video_per_chunk, n_audio_per_chunk):
        ids += [tokens["<|VIDEO|>"]] * nv + [tokens["<|AUDIO|>"]] * na
    return ids + [tokens["<|audio_eos|>"], tokens["<|vision_eos|>"]]


def rel_err(ours, ref):
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("pieces", [
    [(4, 32000), (4, 32000), (2, 20000)],         # whole 2-second chunks, then a partial one
    [(1, 7000), (3, 30000), (5, 40000), (1, 7000)],  # pieces that cut chunks anywhere
])
def test_video_with_audio_fed_in_pieces_matches_the_whole_clip(model, tiny_reference, pieces):
    import tiny_models

    tokens = tiny_models.TOKEN_IDS
    n_frames, n_samples = sum(p[0] for p in pieces), sum(p[1] for p in pieces)
    frames, pcm = clip(n_samples / 16000, n_frames)
    # frames are resized into the video pixel budget; each temporal patch (2 frames) gives one token per 28x28
    height, width = media.smart_resize(112, 140, **media.VIDEO_PIXELS)
    grid_tokens, n_grids = (height // 28) * (width // 28), (n_frames + 1) // 2
    n_audio = ((((n_samples + 159) // 160) - 1) // 2 + 1) // 2
    n_chunks = max(-(-n_grids // 2), -(-n_audio // CHUNK_TOKENS))
    video_per_chunk = [grid_tokens * len(range(2 * c, min(2 * c + 2, n_grids))) for c in range(n_chunks)]
    audio_per_chunk = [max(0, min(CHUNK_TOKENS, n_audio - CHUNK_TOKENS * c)) for c in range(n_chunks)]
    prefix = [tokens["<|im_start|>"]] + model.tokenize("user\n")
    question = model.tokenize("What happened?<|im_end|>\n<|im_start|>assistant\n")
    ids = prefix + av_layout(tokens, video_per_chunk, audio_per_chunk) + question
    expected = reference_logits(tiny_reference("base"), ids, tokens, frames=frames, pcm=pcm)

    with model.stream(kv_type="f32", n_ctx=1024) as s:
        s.feed_tokens(prefix)
        f0 = a0 = 0
        for nf, na in pieces:
            s.feed(video=frames[f0:f0 + nf], audio=pcm[a0:a0 + na], fps=2.0)
            f0, a0 = f0 + nf, a0 + na
            assert s.media_open
        s.feed_tokens(question)          # closes the block: last partial chunk, closing tokens
        assert not s.media_open
        assert s.n_tokens == len(ids)
        assert rel_err(s.logits(), expected[-1]) <= 1e-4


def test_audio_alone_and_asking_in_the_middle_of_a_stream(model, tiny_reference):
    import tiny_models

    tokens = tiny_models.TOKEN_IDS
    _, pcm = clip(5.3, 0)
    n_audio = ((((pcm.size + 159) // 160) - 1) // 2 + 1) // 2
    question = model.tokenize("What happened?<|im_end|>\n<|im_start|>assistant\n")
    ids = [tokens["<|audio_bos|>"]] + [tokens["<|AUDIO|>"]] * n_audio + [tokens["<|audio_eos|>"]] + question
    expected = reference_logits(tiny_reference("base"), ids, tokens, pcm=pcm)

    with model.stream(kv_type="f32", n_ctx=1024) as s:
        s.feed(audio=pcm[:40000])
        mark = s.n_tokens
        first = s.ask("What happened?", max_tokens=3)       # closes, asks, rolls back: the block reopens
        assert s.media_open and s.n_tokens == mark
        s.feed(audio=pcm[40000:])
        s.feed_tokens(question)
        assert rel_err(s.logits(), expected[-1]) <= 1e-4
        assert isinstance(first, str)


def test_ctrl_c_during_a_feed_leaves_the_stream_usable(model):
    """A real Ctrl-C (interrupt_main, as the terminal's SIGINT) while media is fed: the feed either happened
    whole or not at all, and the stream goes on to exactly the logits of an uninterrupted one."""
    import _thread
    import threading
    import time

    frames, pcm = clip(8.0, 16)
    halves = [(frames[:8], pcm[:64000]), (frames[8:], pcm[64000:])]
    with model.stream(kv_type="f32", n_ctx=2048) as ref:
        for video, audio in halves:
            ref.feed(video=video, audio=audio, fps=2.0)
        ref.close_media()
        expected, n_expected = ref.logits(), ref.n_tokens
        ref.rollback(0)
        ref.feed(video=halves[0][0], audio=halves[0][1], fps=2.0)
        n_after_first = ref.n_tokens

    with model.stream(kv_type="f32", n_ctx=2048) as s:
        for delay in (0.0, 0.002, 0.02):
            s.rollback(0)
            timer = threading.Timer(delay, _thread.interrupt_main)
            with pytest.raises(KeyboardInterrupt):
                timer.start()
                s.feed(video=halves[0][0], audio=halves[0][1], fps=2.0)
                time.sleep(2)               # the interrupt lands here at the latest
            timer.join()
            assert s.n_tokens in (0, n_after_first)
            if s.n_tokens == 0:             # interrupted before the feed: do it again
                s.feed(video=halves[0][0], audio=halves[0][1], fps=2.0)
            s.ask("What?", max_tokens=2)    # asking still works and leaves the stream as it was
            assert s.n_tokens == n_after_first and s.media_open
            s.feed(video=halves[1][0], audio=halves[1][1], fps=2.0)
            s.close_media()
            assert s.n_tokens == n_expected
            assert rel_err(s.logits(), expected) <= 1e-6


def test_still_image(model, tiny_reference):
    import tiny_models

    tokens = tiny_models.TOKEN_IDS
    image = np.random.default_rng(3).integers(0, 256, (170, 230, 3), dtype=np.uint8)
    n_image = (168 // 28) * (224 // 28)
    question = model.tokenize("Describe it.<|im_end|>\n<|im_start|>assistant\n")
    ids = [tokens["<|vision_bos|>"]] + [tokens["<|IMAGE|>"]] * n_image + [tokens["<|vision_eos|>"]] + question
    expected = reference_logits(tiny_reference("base"), ids, tokens, image=image)
    with model.stream(kv_type="f32", n_ctx=512) as s:
        s.feed(image=image)
        s.feed_tokens(question)
        assert rel_err(s.logits(), expected[-1]) <= 1e-4


def test_media_errors_leave_the_stream_unchanged(model, tiny_gguf):
    with model.stream(n_ctx=64) as s:
        s.feed("Hello")
        n = s.n_tokens
        frames, pcm = clip(6.0, 12)
        with pytest.raises(om.ContextFullError):
            s.feed(video=frames, audio=pcm)    # 3 chunks of video and audio rows do not fit in 64
        assert s.n_tokens == n and not s.media_open
        with pytest.raises(om.InvalidArgumentError, match="uint8"):
            s.feed(video=frames.astype(np.float32))
        s.feed(audio=pcm[:1000])
        with pytest.raises(om.InvalidArgumentError, match="no video track"):
            s.feed(video=frames[:2])
    with om.Model(tiny_gguf("base", "f32")) as text_only, text_only.stream(n_ctx=64) as s:
        with pytest.raises(om.InvalidArgumentError, match="mmproj"):
            s.feed(audio=np.zeros(16000, np.float32))


def test_audio_at_another_rate_is_resampled_seamlessly(model):
    """44.1 kHz stereo fed in pieces gives the same memory as the same audio resampled in one go."""
    t = np.arange(3 * 44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 300 * t), 0.5 * np.sin(2 * np.pi * 500 * t)], axis=1).astype(np.float32)
    whole = media.Resampler(44100)
    mono_16k = np.concatenate([whole(stereo.mean(axis=1)), whole.flush()])
    with model.stream(kv_type="f32", n_ctx=512) as a, model.stream(kv_type="f32", n_ctx=512) as b:
        for piece in np.array_split(stereo, 7):
            a.feed(audio=piece, sample_rate=44100)
        a.close_media()
        b.feed(audio=mono_16k)
        b.close_media()
        assert a.n_tokens == b.n_tokens
        np.testing.assert_allclose(a.logits(), b.logits(), rtol=0, atol=1e-5 * np.abs(b.logits()).max())


def test_video_without_audio_then_an_image_then_audio_in_one_prompt(model, tiny_reference):
    """A prompt mixing media: a silent video, a still image and an audio clip, each its own block, text
    around them — transformers computes the positions of the whole prompt at once."""
    import tiny_models

    tokens = tiny_models.TOKEN_IDS
    frames, pcm = clip(2.5, 5, seed=5)
    image = np.random.default_rng(6).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    vh, vw = media.smart_resize(112, 140, **media.VIDEO_PIXELS)
    ih, iw = media.smart_resize(60, 90)
    n_video = 3 * (vh // 28) * (vw // 28)           # 5 frames -> 3 temporal patches (the last frame doubled)
    n_image = (ih // 28) * (iw // 28)
    n_audio = ((((pcm.size + 159) // 160) - 1) // 2 + 1) // 2
    text1, text2 = model.tokenize("Look:"), model.tokenize(" and listen:")
    question = model.tokenize("What happened?<|im_end|>\n<|im_start|>assistant\n")
    ids = (text1 + [tokens["<|vision_bos|>"]] + [tokens["<|VIDEO|>"]] * n_video + [tokens["<|vision_eos|>"]]
           + [tokens["<|vision_bos|>"]] + [tokens["<|IMAGE|>"]] * n_image + [tokens["<|vision_eos|>"]] + text2
           + [tokens["<|audio_bos|>"]] + [tokens["<|AUDIO|>"]] * n_audio + [tokens["<|audio_eos|>"]] + question)
    with torch.no_grad():
        video_patches, video_grid = media.image_patches(frames, **media.VIDEO_PIXELS)
        image_patches, image_grid = media.image_patches(image)
        mel = media.log_mel(pcm)
        input_ids = torch.tensor([ids])
        expected = tiny_reference("base")(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
            pixel_values_videos=torch.from_numpy(video_patches), video_grid_thw=torch.tensor([video_grid]),
            video_second_per_grid=torch.tensor([1.0]), pixel_values=torch.from_numpy(image_patches),
            image_grid_thw=torch.tensor([image_grid]), input_features=torch.from_numpy(mel)[None],
            feature_attention_mask=torch.ones(1, mel.shape[1], dtype=torch.long)).logits[0].numpy()

    with model.stream(kv_type="f32", n_ctx=1024) as s:
        s.feed_tokens(text1)
        s.feed(video=frames[:3], fps=2.0)
        s.feed(video=frames[3:], fps=2.0)
        s.feed(image=image)                 # closes the video block first
        s.feed_tokens(text2)
        s.feed(audio=pcm)
        s.feed_tokens(question)
        assert s.n_tokens == len(ids)
        assert rel_err(s.logits(), expected[-1]) <= 1e-4


def write_tone_clip(path, seconds: int, fps: int, sample_rate: int = 16000):
    """A video whose colour changes every second over a tone (mp4: MPEG-4 168x224 + AAC)."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 224, 168, "yuv420p"
        audio = out.add_stream("aac", rate=sample_rate)
        for i in range(seconds * fps):
            frame = np.full((168, 224, 3), [(i // fps) * 40 % 256, 128, 200], np.uint8)
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(seconds * sample_rate) / sample_rate)).astype(np.float32)
        for start in range(0, tone.size, 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = sample_rate, start
            out.mux(audio.encode(frame))
        out.mux(video.encode())
        out.mux(audio.encode())
    return path


def test_a_media_file_written_with_pyav_streams_to_the_expected_tokens(model, tmp_path):
    path = write_tone_clip(tmp_path / "clip.mp4", seconds=5, fps=10)   # 10 fps resampled to 2, resized frames
    vh, vw = media.smart_resize(168, 224, **media.VIDEO_PIXELS)
    with om.media.open(path) as reader, model.stream(n_ctx=2048) as s:
        chunks = 0
        for chunk in reader:
            s.feed(chunk)
            chunks += 1
        s.close_media()
        assert chunks == reader.n_chunks == 3
        # 5 s at 2 fps = 10 frames = 5 temporal patches; 5 s of audio = 125 tokens; 4 framing tokens
        assert s.n_tokens == 5 * (vh // 28) * (vw // 28) + 125 + 4



def test_a_projector_of_another_width_is_refused(tiny_gguf, tiny_projector):
    with pytest.raises(om.ModelMismatchError, match="64|96"):
        om.Model(tiny_gguf("wide", "f32"), mmproj=tiny_projector)


def test_streams_sharing_the_encoder_cache_match_streams_that_encode_for_themselves(model, tiny_gguf, tiny_projector):
    """Two streams of a model with an encoder cache, fed the same chunks in lockstep: the second copies the
    first's encoder outputs (one hit per tower per chunk), and both end with exactly the rows and logits of a
    stream on a model without the cache. A third stream fed other media misses."""
    frames, pcm = clip(6.0, 12)
    other_frames, other_pcm = clip(2.0, 4, seed=1)
    with om.Model(tiny_gguf("base", "f32"), mmproj=tiny_projector, n_threads=2, encoder_cache=1) as cached:
        a, b = cached.stream(policy="omnimem", budget=64), cached.stream(policy="uniform", budget=64)
        for c in range(3):
            for s in (a, b):
                s.feed(video=frames[4 * c:4 * c + 4], audio=pcm[32000 * c:32000 * (c + 1)])
        for s in (a, b):
            s.feed("<|im_end|>")
        assert cached.encoder_cache_hits == 3 * 2      # three chunks, two towers, the second stream
        with cached.stream() as stranger:
            stranger.feed(video=other_frames, audio=other_pcm)
            stranger.close_media()
        assert cached.encoder_cache_hits == 3 * 2
        got = [(s.layer_rows(0), s.logits()) for s in (a, b)]
    for (policy, (rows, logits)) in zip(("omnimem", "uniform"), got):
        with model.stream(policy=policy, budget=64) as s:
            for c in range(3):
                s.feed(video=frames[4 * c:4 * c + 4], audio=pcm[32000 * c:32000 * (c + 1)])
            s.feed("<|im_end|>")
            np.testing.assert_array_equal(rows, s.layer_rows(0))
            np.testing.assert_array_equal(logits, s.logits())
    assert model.encoder_cache_hits == 0


def test_a_negative_encoder_cache_is_refused(tiny_gguf):
    with pytest.raises(om.InvalidArgumentError, match="encoder_cache"):
        om.Model(tiny_gguf("base", "f32"), encoder_cache=-1)
