"""The training script of the shipped AV-Recall model, run for two steps: the layout it trains on is the one
the runtime feeds (same logits), its streams are new at every step, and it writes a GGUF pair that loads."""

from __future__ import annotations

import collections
import json
import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trainer():
    sys.path.insert(0, str(ROOT / "scripts"))
    import train_avrecall_model

    return train_avrecall_model


@pytest.mark.parametrize("vision", ["frozen", "pretrained", "trained"])
def test_two_steps_write_a_pair_that_loads(tmp_path, trainer, vision):
    import omnimem_cpp as om

    report = tmp_path / "report.json"
    # the trained tower's run opens with an audio-only phase: a step without video rows for it to fill
    phases = ["--phase", "2:12-12@6"] if vision != "trained" else ["--phase", "1:12-12@6/audio", "--phase", "2:12-12@6"]
    args = [*phases, "--vision", vision, "--work-dir", str(tmp_path / "work"),
            "--out-dir", str(tmp_path), "--report", str(report), "--threads", "2", "--vision-pretraining-steps", "3"]
    assert trainer.main(args) == 0
    written = json.loads(report.read_text())
    if vision == "pretrained":
        pretraining = written["vision_pretraining"]
        assert pretraining["steps"] == 3 and pretraining["curve"][-1]["step"] == 3
        assert all(0 <= a <= 1 for a in pretraining["held_out_accuracy"].values())
        assert "--vision-pretraining-steps 3" in written["command"]
    else:
        assert "vision_pretraining" not in written and "--vision-pretraining-steps" not in written["command"]
    # transformers (its own vision tower) on the reproduced layout against the runtime streaming the same
    # clip (F32 memory), before training and with the weights it wrote (a trained vision tower included)
    assert written["layout_check_rel_error"] < 1e-4
    assert written["trained_check_rel_error"] < 1e-4
    assert f"--vision {vision}" in written["command"]
    last = written[f"phase{len(phases) // 2}"]["curve"]
    assert len(last) == 1 and last[0]["step"] == 2 and last[0]["seconds"] > 0
    phase_seconds = sum(written[f"phase{k + 1}"]["curve"][-1]["seconds"] for k in range(len(phases) // 2))
    assert written["training_minutes"] == round(phase_seconds / 60, 1)
    with om.Model(tmp_path / "avrecall-text.gguf", mmproj=tmp_path / "avrecall-mmproj.gguf") as model:
        assert model.info.n_layer == trainer.TEXT["num_hidden_layers"]
        if vision == "frozen":
            # the towers' outputs were centred and scaled on other streams, then the video rows moved off
            # centre: on a new stream the audio rows have unit spread (before: 0.34) about a mean far smaller
            # than the video rows' offset; video rows vary mostly between streams (each has its own
            # background), so their scale is checked, and that their mean is at least the offset away
            cfg = trainer.Phase(1, 12, 12, 24.0).stream_config(12345)
            with model.stream() as s:
                layout = trainer.StreamLayout(s).encode(trainer.AVRecallStream(cfg))
            is_video = layout["is_video"]
            audio, video = layout["embeddings"][~is_video], layout["embeddings"][is_video]
            offset = trainer.MODALITY_MARKER * np.sqrt(audio.shape[1])
            assert 0.8 < audio.std(0).mean() < 1.25 and np.linalg.norm(audio.mean(0)) < 0.5 * offset
            assert 0.3 < video.std(0).mean() < 2.0 and np.linalg.norm(video.mean(0)) > 0.8 * offset


def test_training_streams_differ_every_step_and_repeat_with_the_seed(trainer):
    phase = trainer.Phase(10, 12, 20, 24.0)
    configs = [trainer.train_stream_config(0, phase, step) for step in range(10)]
    assert len({c.seed for c in configs}) == 10 and all(12 <= c.seconds <= 20 for c in configs)
    assert all(c.visual_events_per_minute == c.sound_events_per_minute == 24.0 for c in configs)
    assert configs == [trainer.train_stream_config(0, phase, step) for step in range(10)]
    assert trainer.train_stream_config(1, phase, 0).seed != configs[0].seed
    assert min(c.seed for c in configs) >= trainer.TRAIN_SEED_BASE     # never a benchmark seed


def test_dense_phases_keep_every_question_well_posed(trainer):
    """Dense training streams bring events closer than the benchmark's, never so close that a question about
    a moment has two answers (the generator's gaps hold) or that a short stream has nothing to ask about."""
    from omnimem_cpp.avrecall import AVRecallStream, all_questions

    for phase in trainer.PHASES:
        cfg = phase.stream_config(trainer.TRAIN_SEED_BASE - 1)
        stream = AVRecallStream(cfg)
        times = {m: [e.time for e in stream.timeline.events if e.modality == m] for m in ("visual", "audio")}
        for modality, ts in times.items():
            assert all(b - a >= cfg.min_event_gap for a, b in zip(ts, ts[1:])), (phase, modality)
        for s in times["audio"]:
            assert not any(s - cfg.cross_modal_gap < v < s + cfg.sound_seconds + cfg.cross_modal_gap
                           for v in times["visual"]), phase
        assert len({q.kind for q in all_questions(cfg, stream.timeline)}) >= 3, phase


@pytest.mark.parametrize("text", ["10:12-20", "10:20-12@6", "0:6-8@6", "10:6-8@0", "ten:6-8@6"])
def test_a_bad_phase_is_refused_with_its_form(trainer, text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="STEPS:SHORTEST-LONGEST@EVENTS_PER_MINUTE|must be"):
        trainer.Phase.parse(text)


def test_phase_options_parse_and_name_their_folder(trainer):
    phase = trainer.Phase.parse("1500:6-12@24/audio")
    assert phase.audio_only and phase.kinds == ("sound_played", "sound_count", "sound_order")
    assert trainer.Phase.parse(str(phase)) == phase
    assert "/" not in phase.dir_name() and ":" not in phase.dir_name()
    mixed = trainer.Phase.parse("10:6-8@6/sound_played,colour_at_sound")
    assert not mixed.audio_only and mixed.kinds == ("sound_played", "colour_at_sound")
    assert trainer.Phase.parse(str(mixed)) == mixed
    balanced = trainer.Phase.parse("10:6-8@6/count_at_sound/balanced")
    assert balanced.balanced and balanced.kinds == ("count_at_sound",) and not mixed.balanced
    assert trainer.Phase.parse(str(balanced)) == balanced and "balanced" in balanced.dir_name()


def test_phase_folders_are_named_by_the_curriculum_and_fit_a_file_name(trainer):
    """Short curricula spell out every phase (the shipped run's folders keep their names); a long one is
    named by a digest, so that it still fits a file name and two long curricula do not share a folder."""
    name = lambda texts: trainer.phase_dir_name("abc", "pretrained", 5e-4, [trainer.Phase.parse(t) for t in texts])
    short = name(["3000:6-12@24/object_appeared", "600:24-60@6"])
    assert short == "trained-abc-pretrained-lr0.0005-3000x6-12at24_object_appeared+600x24-60at6"
    long = [str(p) for p in trainer.PHASES] * 2
    assert len(name(long)) <= trainer.MAX_NAME and name(long).endswith(trainer.PHASES[-1].dir_name())
    assert name(long) != name(long[:-1] + ["600:24-60@6/balanced"]) != name(long[:-1] + ["700:24-60@6"])


def test_a_balanced_phase_weighs_each_answer_of_a_kind_alike(trainer):
    """Over the phase's streams, an answer's weight times its share of its kind is the same for every answer
    of the kind (below the cap): "1" object on screen at a sound, the commonest answer, weighs less than one."""
    from omnimem_cpp.avrecall import Timeline, all_questions

    phase = trainer.Phase.parse("10:24-60@6/balanced")
    weights = trainer.answer_weights(3, phase, n_streams=60)
    answers = {}
    for step in range(60):
        cfg = trainer.train_stream_config(3, phase, step)
        for q in all_questions(cfg, Timeline(cfg)):
            answers.setdefault(q.kind, []).append(q.answer)
    assert {k for k, _ in weights} == set(answers)
    for kind, given in answers.items():
        for answer in set(given):
            share = given.count(answer) / len(given)
            weight = weights[(kind, answer)]
            assert weight <= trainer.MAX_ANSWER_WEIGHT
            if weight < trainer.MAX_ANSWER_WEIGHT:
                assert weight * share == pytest.approx(1 / len(set(given)))
    assert weights[("count_at_sound", "1")] < 1 < weights[("count_at_sound", "0")]


def test_the_answer_loss_is_the_mean_cross_entropy_weighted_by_answer(trainer):
    import torch

    torch.manual_seed(0)
    logits = torch.randn(12, 11)
    targets = torch.full((12,), -100)
    targets[2:4], targets[6], targets[8:12] = torch.tensor([4, 7]), 2, torch.tensor([1, 1, 9, 0])
    question_of = torch.tensor([0] * 4 + [1] * 3 + [2] * 5)     # three packed questions of 4, 3 and 5 tokens
    picked = [("sound_played", ("q", "yes")), ("count_at_sound", ("q", "1")), ("count_at_sound", ("q", "3"))]
    plain = trainer.answer_loss(logits, targets, question_of, picked, None)
    assert plain == pytest.approx(torch.nn.functional.cross_entropy(logits, targets))
    weights = {("sound_played", "yes"): 1.0, ("count_at_sound", "1"): 1.0, ("count_at_sound", "3"): 1.0}
    assert trainer.answer_loss(logits, targets, question_of, picked, weights) == pytest.approx(plain)
    weights[("count_at_sound", "3")] = 3.0
    token = torch.log_softmax(logits, -1)
    answer_tokens = [t for t in range(12) if targets[t] != -100]
    w = [3.0 if question_of[t] == 2 else 1.0 for t in answer_tokens]
    expected = sum(wi * -token[t, targets[t]] for wi, t in zip(w, answer_tokens)) / sum(w)
    assert trainer.answer_loss(logits, targets, question_of, picked, weights) == pytest.approx(expected)


def test_packed_questions_learn_as_each_asked_alone_after_the_stream(trainer, tmp_path):
    """Training asks a stream's questions side by side in one row after its K/V, each masked to the stream
    and itself: the loss, its gradients and the first answer tokens are those of transformers reading the
    stream followed by each question alone (plain causal attention), averaged over the answer tokens."""
    import torch
    from transformers import AutoTokenizer

    hf = trainer.build_checkpoint(tmp_path / "hf", seed=0)
    thinker = trainer.tiny_models.load_thinker(hf).train()
    tok = AutoTokenizer.from_pretrained(hf)
    seq = trainer.Sequence(tok, {t: tok.convert_tokens_to_ids(t) for t, _ in trainer.tiny_models.ADDED_TOKENS})
    text_model, head = thinker.model, thinker.lm_head
    embed = text_model.get_input_embeddings()
    gen = torch.Generator().manual_seed(3)
    n = 60
    layout = {"embeddings": torch.randn(n, trainer.TEXT["hidden_size"], generator=gen).numpy(), "videos": []}
    positions = np.repeat(np.cumsum(np.random.default_rng(3).integers(0, 3, n))[:, None], 3, axis=1)
    questions = [("Did a bell sound?", "yes"), ("How many objects were on screen when the drum played?", "2"),
                 ("Which came first, the red circle or the horn?", "the horn")]
    params = [p for p in thinker.parameters() if p.requires_grad]

    def gradients(loss):
        thinker.zero_grad()
        loss.backward()
        return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]

    logits, batch = trainer.answer_logits(text_model, head, seq, layout, positions, questions)
    picked = [("kind", q) for q in questions]
    packed_loss = trainer.answer_loss(logits, batch["targets"], batch["question_of"], picked, None)
    packed_first = logits[batch["first_answer"]].argmax(-1)
    packed_grads = gradients(packed_loss)

    nll, first = [], []
    inputs, pos = seq.stream_inputs(embed, layout, positions)
    for question, answer in questions:
        ids, n_answer = seq.question_ids(question, answer)
        text_pos = seq.question_positions(pos, len(ids))
        all_pos = np.concatenate([pos, np.repeat(text_pos[:, None], 3, axis=1)])
        alone = head(text_model(inputs_embeds=torch.cat([inputs, embed(torch.tensor(ids))[None]], dim=1),
                                position_ids=torch.from_numpy(all_pos.T.copy())[:, None, :]).last_hidden_state[0])
        predicting = alone[len(pos) + len(ids) - n_answer - 1:len(pos) + len(ids) - 1]
        nll.append(torch.nn.functional.cross_entropy(predicting, torch.tensor(ids[-n_answer:]), reduction="none"))
        first.append(predicting[0].argmax())
    alone_loss = torch.cat(nll).mean()
    assert len(batch["first_answer"]) == 3 and int((batch["targets"] != -100).sum()) == len(torch.cat(nll))
    assert packed_loss.item() == pytest.approx(alone_loss.item(), rel=1e-5)
    assert packed_first.tolist() == torch.stack(first).tolist()
    for p, a in zip(packed_grads, gradients(alone_loss)):
        torch.testing.assert_close(p, a, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("text", ["10:6-8@6/audio/colour_at_sound", "10:6-8@6/loudness", "10:6-8@6/x/y"])
def test_a_bad_phase_option_is_refused_with_the_choices(trainer, text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="sound_played"):
        trainer.Phase.parse(text)


def test_an_audio_only_phase_hears_without_seeing_and_asks_every_sound_question(trainer):
    """No video rows reach the model (audio rows carry one position thrice), and every question of the
    phase's kinds is asked, none of another kind."""
    import omnimem_cpp as om
    from omnimem_cpp.avrecall import MODEL, PROJECTOR, AVRecallStream, all_questions

    phase = trainer.Phase.parse("5:12-12@24/audio/sound_played")
    with om.Model(MODEL, mmproj=PROJECTOR) as model:
        data = trainer.TrainingStreams(model, 0, phase, train_vision=False)(3)
        full = trainer.TrainingStreams(model, 0, trainer.Phase(5, 12, 12, 24.0), train_vision=False)(3)
    assert data["videos"] == [] and len(data["embeddings"]) == len(data["positions"]) == len(data["chunk"])
    assert (data["positions"][:, 0] == data["positions"][:, 1]).all()
    is_audio = ~full["is_video"]
    np.testing.assert_array_equal(data["embeddings"], full["embeddings"][is_audio])
    cfg = trainer.train_stream_config(0, phase, 3)
    expected = [(q.text, q.answer) for q in all_questions(cfg, AVRecallStream(cfg).timeline) if q.kind == "sound_played"]
    assert data["questions"] == {"sound_played": expected} and data["per_kind"] == len(expected) == 6


def test_stretching_moves_chunks_apart_in_time_only(trainer):
    """A stretched layout shifts each chunk's time positions by a gap that grows chunk by chunk; a video
    row keeps its height and width positions (the first one too, whose three positions start out equal)."""
    video = [(1 + 50 * c, 1 + i, 1 + j) for c in range(2) for i in range(2) for j in range(2)]
    audio = [(1 + 50 * c + k,) * 3 for c in range(2) for k in range(4)]
    layout = {"positions": np.array(video[:4] + audio[:4] + video[4:] + audio[4:]),
              "chunk": np.repeat([0, 1], 8), "is_video": np.tile(np.repeat([True, False], 4), 2)}
    rng = np.random.default_rng(0)
    stretched = [trainer.Sequence.stretch(layout, rng) for _ in range(20)]
    moved = [p for p in stretched if (p != layout["positions"]).any()]
    assert 0 < len(moved) < 20                                  # about half of the streams are stretched
    is_video = layout["is_video"]
    for p in moved:
        shift = p - layout["positions"]
        np.testing.assert_array_equal(shift[is_video, 1:], 0)
        np.testing.assert_array_equal(shift[~is_video, 1], shift[~is_video, 0])
        np.testing.assert_array_equal(shift[~is_video, 2], shift[~is_video, 0])
        per_chunk = [np.unique(shift[layout["chunk"] == c, 0]) for c in range(2)]
        assert all(len(u) == 1 for u in per_chunk) and 0 <= per_chunk[0][0] <= per_chunk[1][0]


def test_the_retrieval_check_feeds_the_real_loop(trainer, capsys):
    """scripts/check_retrieval_learning.py: its stand-in streams say "yes" for exactly the symbols whose
    vector fills a second of rows, and they go through the training loop as a real layout does."""
    import check_retrieval_learning as check

    sounds = check.SyntheticSounds(rows=150, seed=0)
    for step in range(5):
        data = sounds(step)
        for question, answer in data["questions"]["sound_played"]:
            vector = sounds.vectors[question.split()[2]].astype(np.float32)
            n_rows = int((data["embeddings"] == vector).all(1).sum())
            assert n_rows == (check.SOUND_ROWS if answer == "yes" else 0), (step, question)
    assert check.main(["--steps", "2"]) == 0
    assert "accuracy over the last 100 steps" in capsys.readouterr().out


def test_the_order_check_asks_which_shape_came_first_both_ways(trainer, capsys):
    """The appear_order stand-in: each shape's vector fills the frame of the second it appeared in (or, kept
    on screen, two rows of every frame from then on, rows no other shape takes), appearances at least
    MIN_APPEARANCE_GAP apart; every ordered pair is asked, answered by the earlier second; video rows keep
    height and width at the stream's start while audio rows carry the time on all three axes."""
    import check_retrieval_learning as check

    for video, persist in ((True, False), (True, True), (False, False)):
        stand_in = check.SyntheticAppearances(seconds=30, seed=1, video=video, persist=persist)
        for step in range(6):
            data = stand_in(step)
            second = data["positions"][:, 0] // trainer.POSITIONS_PER_SECOND
            np.testing.assert_array_equal(data["positions"][:, 0], 1 + second * trainer.POSITIONS_PER_SECOND)
            if video:
                assert data["positions"][:, 1:].min() == 1 and data["positions"][:, 1:].max() <= check.FRAME_ROWS
            else:
                np.testing.assert_array_equal(data["positions"][:, 1], data["positions"][:, 0])
            first_seen, taken = {}, np.zeros(len(second), bool)
            for shape, vector in stand_in.vectors.items():
                rows = (data["embeddings"] == vector.astype(np.float32)).all(1)
                if rows.any():
                    assert not (rows & taken).any()
                    taken |= rows
                    first_seen[shape] = second[rows].min()
                    per_frame = collections.Counter(second[rows])
                    expected = 2 if persist else check.FRAME_ROWS
                    assert set(per_frame.values()) == {expected}
                    assert len(per_frame) == (30 - first_seen[shape] if persist else 1)
            assert 2 <= len(first_seen) <= 3
            times = sorted(first_seen.values())
            assert min(np.diff(times)) >= check.MIN_APPEARANCE_GAP
            asked = data["questions"]["appear_order"]
            assert len(asked) == len(first_seen) * (len(first_seen) - 1)
            for question, answer in asked:
                a, b = question.removeprefix("Which appeared first, the ").removesuffix("?").split(" or the ")
                assert answer == min((a, b), key=first_seen.get)
    assert check.main(["--question", "appear_order", "--steps", "2", "--seconds", "13", "--persist",
                       "--mrope-section", "12,2,2"]) == 0
    assert "M-RoPE section 12,2,2" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        check.main(["--question", "appear_order", "--seconds", "12"])
    assert "no room for three appearances" in capsys.readouterr().err


def test_the_count_check_asks_how_many_slots_were_taken_at_each_sound(trainer, capsys):
    """The count_at_sound stand-in: each question's answer is the number of slots its sound's frame fills
    with a shape's vector, counted back from the rows; each sound is SOUND_ROWS audio rows of its symbol's
    vector right after its second's frame, at the time positions of that second, in a scene of its own;
    every count from 0 to MAX_COUNT is drawn."""
    import check_retrieval_learning as check

    stand_in = check.SyntheticCounts(seconds=40, seed=2)
    shapes = np.stack([stand_in.vectors[s] for s in stand_in.shapes]).astype(np.float32)
    answers = collections.Counter()
    for step in range(20):
        data = stand_in(step)
        rows, video, positions = data["embeddings"], data["is_video"], data["positions"]
        assert video.sum() == 40 * check.FRAME_ROWS
        is_shape = (rows[:, None, :] == shapes[None]).all(2).any(1)
        assert not (is_shape & ~video).any()
        for question, answer in data["questions"]["count_at_sound"]:
            symbol = question.removeprefix("How many objects were on screen when the ").split()[0]
            heard = np.flatnonzero((rows == stand_in.vectors[symbol].astype(np.float32)).all(1))
            assert len(heard) == check.SOUND_ROWS and not video[heard].any()
            assert np.all(np.diff(heard) == 1)
            start = positions[heard[0], 0]
            np.testing.assert_array_equal(positions[heard], np.repeat(start + np.arange(check.SOUND_ROWS)[:, None], 3, 1))
            frame = np.arange(heard[0] - check.FRAME_ROWS, heard[0])     # the frame just before it
            assert video[frame].all() and (positions[frame, 0] == start).all()
            assert int(is_shape[frame].sum()) == check.SLOT_ROWS * int(answer)
            answers[answer] += 1
    assert set(answers) == {str(n) for n in range(check.MAX_COUNT + 1)}
    assert check.main(["--question", "count_at_sound", "--steps", "2", "--seconds", "12"]) == 0
    assert "How many objects were on screen" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        check.main(["--question", "count_at_sound", "--seconds", "8"])
    assert "shorter than a scene" in capsys.readouterr().err


def test_slot_labels_name_what_both_frames_of_a_token_show(trainer):
    """The vision tower's pretraining targets: the tokens at least half inside an occupied slot name its
    shape and colour, which both frames of the token show (visual events fall on whole seconds); every
    other token says "none" unless it shows a sliver of a slot's box."""
    from omnimem_cpp.avrecall import AVRecallConfig, AVRecallStream

    cfg = trainer.Phase(1, 30, 30, 30.0).stream_config(trainer.VISION_SEED_BASE)
    av = AVRecallStream(cfg)
    labels = trainer.SlotLabels(AVRecallConfig())
    cover = {slot: share.reshape(-1) for slot, share in av.slot_cover().items()}
    named = set()
    for group in range(int(cfg.seconds)):
        shape, colour = labels(av, group)
        assert shape.shape == colour.shape == (cover[cfg.slots[0]].size,)
        states = [av.timeline.state_at(group + half) for half in (0.0, 0.5)]
        assert states[0] == states[1]
        for slot, share in cover.items():
            inside, sliver = share >= 0.5, (share > 0) & (share < 0.5)
            assert (shape[sliver] == labels.IGNORE).all() and (colour[sliver] == labels.IGNORE).all()
            there = [(o, c) for o, (c, s) in states[0].items() if s == slot]
            if there:
                (obj, col), = there
                assert {labels.shapes[i] for i in shape[inside]} == {obj}
                assert {labels.colours[i] for i in colour[inside]} == {col}
                named.add(obj)
            else:
                assert (shape[inside] == 0).all() and (colour[inside] == 0).all()
        outside = sum(cover.values()) == 0
        assert (shape[outside] == 0).all() and (colour[outside] == 0).all()
    assert len(named) >= 3


def test_object_attention_reads_each_layer_of_an_untrained_thinker(trainer, tmp_path):
    """scripts/object_attention.py on the untrained thinker: the rows it counts as showing an object are its
    slot's tokens for every second the object is on screen (six per frame pair), and a head's share of a set
    of video rows is never above its share of all video rows."""
    import object_attention

    import omnimem_cpp as om
    from omnimem_cpp.avrecall import AVRecallStream

    hf_dir = tmp_path / "init"
    hf_dir.mkdir()
    trainer.build_checkpoint(hf_dir, 0)
    mmproj = tmp_path / "mmproj.gguf"
    trainer.convert_checkpoint(hf_dir, tmp_path / "text.gguf", "f32", mmproj=mmproj, mmproj_outtype="f32",
                               progress=False)
    cfg = trainer.Phase(1, 12, 12, 24.0).stream_config(object_attention.SEED_BASE)
    av = AVRecallStream(cfg)
    with om.Model(tmp_path / "text.gguf", mmproj=mmproj) as model, model.stream() as s:
        layout = trainer.StreamLayout(s).encode(av)
    for obj in cfg.objects:
        seconds_on_screen = sum(obj in av.timeline.state_at(t) for t in range(int(cfg.seconds)))
        rows = object_attention.object_rows(av, layout, obj)
        assert rows.sum() == 6 * seconds_on_screen and layout["is_video"][rows].all()
    found = object_attention.measure(hf_dir, mmproj, 1)
    shares = np.concatenate([v for v in found.values() if len(v)])
    assert len(shares) == 6 and shares.shape[1:] == (trainer.TEXT["num_hidden_layers"], 4)
    assert (shares >= 0).all() and (shares <= 1 + 1e-6).all()
    assert (shares[..., 0] <= shares[..., 2] + 1e-6).all() and (shares[..., 1] <= shares[..., 2] + 1e-6).all()
    assert not (tmp_path / "init" / "object-attention-text.gguf").exists()


def test_a_phase_of_few_kinds_passes_over_streams_without_them(tmp_path, trainer):
    """The third and fourth streams of this phase hold no count_at_sound question (none of their sounds has
    a well-posed count); their steps pass without a gradient and the run ends with its curve."""
    from omnimem_cpp.avrecall import Timeline, all_questions

    phase = trainer.Phase.parse("4:12-12@6/count_at_sound")
    asked = [sum(q.kind == "count_at_sound" for q in all_questions(cfg, Timeline(cfg)))
             for cfg in (trainer.train_stream_config(0, phase, step) for step in range(4))]
    assert asked[0] > 0 and asked[2:] == [0, 0]
    report = tmp_path / "report.json"
    assert trainer.main(["--phase", str(phase), "--vision", "frozen", "--work-dir", str(tmp_path / "work"),
                         "--out-dir", str(tmp_path), "--report", str(report), "--threads", "2"]) == 0
    curve = json.loads(report.read_text())["phase1"]["curve"]
    assert [p["step"] for p in curve] == [4] and set(curve[0]["by_kind"]) == {"count_at_sound"}


def test_a_run_with_other_tower_settings_does_not_take_an_earlier_start(tmp_path, trainer):
    """The start (seeded towers, standardised) is kept in the work folder for resumed runs; a run with
    another vision block gain in the same folder makes its own instead of taking the earlier one."""
    reports = []
    for gain in ("1", "0.1", "1"):
        report = tmp_path / f"report-{len(reports)}.json"
        assert trainer.main(["--phase", "1:12-12@6", "--vision", "frozen", "--vision-block-gain", gain, "--work-dir", str(tmp_path / "work"),
                             "--out-dir", str(tmp_path / "out"), "--report", str(report), "--threads", "2"]) == 0
        reports.append(json.loads(report.read_text())["tower_output_scales"])
    assert len(list((tmp_path / "work").glob("init-*"))) == 2
    assert reports[0] == reports[2] and reports[0]["visual"] != reports[1]["visual"]


def first_text_file(trainer, tmp_path) -> tuple:
    """A one-phase run to start from: (its work folder, its text file, the options a later run shares)."""
    work, first = tmp_path / "work", tmp_path / "first"
    common = ["--vision", "frozen", "--work-dir", str(work), "--threads", "2"]
    assert trainer.main(["--phase", "1:12-12@6", "--out-dir", str(first), "--report", str(tmp_path / "r1.json"),
                         *common]) == 0
    return work, first / "avrecall-text.gguf", common


def test_a_run_can_start_from_a_trained_text_file(tmp_path, trainer):
    """--start-from takes the language model of a text file as the outcome of the first --phases-done
    phases: only the later phases train, from the file's weights, on the towers these settings build."""
    from safetensors.numpy import load_file

    from omnimem_cpp.convert.qwen25_omni import read_text_weights

    work, text, common = first_text_file(trainer, tmp_path)
    report = tmp_path / "r2.json"
    assert trainer.main(["--phase", "1:12-12@6", "--phase", "1:12-12@6", "--start-from", str(text),
                         "--phases-done", "1", "--out-dir", str(tmp_path / "second"), "--report", str(report),
                         *common]) == 0
    written = json.loads(report.read_text())
    assert written["start_from"]["phases_done"] == 1 and "--start-from avrecall-text.gguf --phases-done 1" in written["command"]
    assert "phase1" not in written and written["phase2"]["curve"][-1]["step"] == 1
    assert written["training_minutes"] == round(written["phase2"]["curve"][-1]["seconds"] / 60, 1)
    # the second phase started from the file's (F16) weights and the first run's towers
    start, = work.glob("start-*")
    init, = work.glob("init-*")
    started, towers = load_file(start / "model.safetensors"), load_file(init / "model.safetensors")
    config = json.loads((init / "config.json").read_text())
    for name, weight in read_text_weights(text, config).items():
        np.testing.assert_array_equal(started[name], weight, err_msg=name)
    for name in (n for n in towers if n.startswith(("visual.", "audio_tower."))):
        np.testing.assert_array_equal(started[name], towers[name], err_msg=name)


def test_a_hand_off_makes_in_one_run_what_a_run_from_the_text_file_makes(tmp_path, trainer):
    """--hand-off-after 1 goes on after the first phase from its F16 text file, as a second run started from
    that file does: the shipped pair was made by such a chain of runs, and the defaults remake it in one."""
    work, text, common = first_text_file(trainer, tmp_path)
    two = ["--phase", "1:12-12@6", "--phase", "1:12-12@6"]
    assert trainer.main([*two, "--start-from", str(text), "--phases-done", "1", "--out-dir", str(tmp_path / "chain"),
                         "--report", str(tmp_path / "r2.json"), *common]) == 0
    alone = [a if a != str(work) else str(tmp_path / "alone") for a in common]        # nothing to resume from
    report = tmp_path / "r3.json"
    assert trainer.main([*two, "--hand-off-after", "1", "--out-dir", str(tmp_path / "one"), "--report", str(report),
                         *alone]) == 0
    made = [(tmp_path / d / "avrecall-text.gguf").read_bytes() for d in ("chain", "one")]
    assert made[0] == made[1]
    written = json.loads(report.read_text())
    assert written["hand_offs"] == [1] and written["command"].endswith("--hand-off-after 1")
    assert [written[f"phase{k}"]["curve"][-1]["step"] for k in (1, 2)] == [1, 1]


def test_a_grown_start_answers_as_its_file_did(tmp_path, trainer):
    """--grow-layers adds layers that write nothing into the residual stream until trained: the grown start
    gives transformers' logits of the file's own language model, keeps the file's layers in order, and a run
    from it writes a text file with the added layers that the runtime loads."""
    import torch

    import omnimem_cpp as om

    work, text, common = first_text_file(trainer, tmp_path)
    init = next(work.glob("init-*"))
    thinkers = {}
    for grow in (0, 3, 6):
        trainer.start_from_text_file(init, tmp_path / f"start-{grow}", text, work / "untrained-text.gguf", grow)
        thinkers[grow] = trainer.tiny_models.load_thinker(tmp_path / f"start-{grow}")
    n_layers = trainer.TEXT["num_hidden_layers"]
    assert [len(t.model.layers) for t in thinkers.values()] == [n_layers, n_layers + 3, n_layers + 6]
    # 4 old layers, 3 new ones after old layers 0, 2 and 3
    for new, old in enumerate([0, None, 1, 2, None, 3, None]):
        if old is not None:
            assert torch.equal(thinkers[3].model.layers[new].mlp.up_proj.weight,
                               thinkers[0].model.layers[old].mlp.up_proj.weight)
    embeddings = torch.randn(1, 40, trainer.TEXT["hidden_size"], generator=torch.Generator().manual_seed(1))
    positions = torch.arange(40)[None, None, :].expand(3, 1, 40)
    with torch.no_grad():
        logits = [t.lm_head(t.model(inputs_embeds=embeddings, position_ids=positions).last_hidden_state)
                  for t in thinkers.values()]
    torch.testing.assert_close(logits[1], logits[0], rtol=0, atol=0)
    torch.testing.assert_close(logits[2], logits[0], rtol=0, atol=0)

    report = tmp_path / "r2.json"
    assert trainer.main(["--phase", "1:12-12@6", "--phase", "1:12-12@6", "--start-from", str(text),
                         "--phases-done", "1", "--grow-layers", "2", "--out-dir", str(tmp_path / "second"),
                         "--report", str(report), *common]) == 0
    written = json.loads(report.read_text())
    assert written["text"]["num_hidden_layers"] == n_layers + 2 and "--grow-layers 2" in written["command"]
    assert written["start_from"]["grown_layers"] == 2 and written["trained_check_rel_error"] < 1e-5
    second = tmp_path / "second"
    with om.Model(second / "avrecall-text.gguf", mmproj=second / "avrecall-mmproj.gguf") as model:
        assert model.info.n_layer == n_layers + 2


@pytest.mark.parametrize("extra, message", [
    (["--start-from", "x.gguf"], "--start-from and --phases-done go together"),
    (["--phase", "1:12-12@6", "--start-from", "x.gguf", "--phases-done", "1"], "must leave a phase to train"),
    (["--phase", "1:12-12@6", "--phase", "1:12-12@6", "--start-from", "missing.gguf", "--phases-done", "1"],
     "no such file"),
    (["--phase", "1:12-12@6", "--grow-layers", "1"], "goes with --start-from"),
    (["--phase", "1:12-12@6", "--phase", "1:12-12@6", "--hand-off-after", "2"], "leaves a phase after it"),
    (["--hand-off-after", "0"], "leaves a phase after it"),
    (["--phase", "1:12-12@6", "--text-layers", "0"], "--text-layers takes a count of at least 1"),
    (["--phase", "1:12-12@6", "--phase", "1:12-12@6", "--start-from", "x.gguf", "--phases-done", "1",
      "--text-layers", "6"], "not with --start-from"),
])
def test_a_bad_start_is_refused(trainer, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit):
        trainer.main([*extra, "--work-dir", str(tmp_path)])
    assert message in capsys.readouterr().err


def test_a_text_file_of_another_tokenizer_is_refused(trainer, tmp_path, tiny_gguf):
    """A language model trained on other token ids would read every token as another."""
    args = ["--phase", "1:12-12@6", "--phase", "1:12-12@6", "--vision", "frozen", "--work-dir", str(tmp_path),
            "--out-dir", str(tmp_path / "out"), "--report", str(tmp_path / "r.json"), "--threads", "2"]
    with pytest.raises(SystemExit, match="not the one these settings build"):
        trainer.main([*args, "--start-from", str(tiny_gguf("base", "f32")), "--phases-done", "1"])


def test_a_pretrained_tower_needs_a_step(trainer, tmp_path, capsys):
    with pytest.raises(SystemExit):
        trainer.main(["--vision", "pretrained", "--vision-pretraining-steps", "0", "--work-dir", str(tmp_path)])
    assert "--vision-pretraining-steps must be at least 1" in capsys.readouterr().err


def test_another_text_shape_changes_only_the_language_model(trainer, tmp_path):
    """--text-kv-heads 4 gives every query head its own keys, --text-layers 5 one decoder layer more,
    --mrope-section 12,2,2 the time positions twelve of the sixteen frequency pairs: the converted model says
    so, the runtime's logits match transformers' for it, each run keeps its own start beside the default one,
    and the towers are drawn the same (their weights do not depend on the language model's shape)."""
    import torch
    from safetensors.torch import load_file

    import omnimem_cpp as om

    section = trainer.TEXT["mrope_section"]
    default = (trainer.TEXT["num_key_value_heads"], trainer.TEXT["num_hidden_layers"], tuple(section))
    starts = {}
    for shape, flags in {default: [], (4, *default[1:]): ["--text-kv-heads", "4"],
                         (default[0], 5, default[2]): ["--text-layers", "5"],
                         (*default[:2], (12, 2, 2)): ["--mrope-section", "12,2,2"]}.items():
        out, report = tmp_path / f"out-{len(starts)}", tmp_path / f"report-{len(starts)}.json"
        assert trainer.main(["--phase", "1:12-12@6", "--vision", "frozen", *flags, "--work-dir", str(tmp_path / "work"),
                             "--out-dir", str(out), "--report", str(report), "--threads", "2"]) == 0
        written = json.loads(report.read_text())
        text = written["text"]
        assert (text["num_key_value_heads"], text["num_hidden_layers"], tuple(text["mrope_section"])) == shape
        assert " ".join(flags) in written["command"] and ("--text-" in written["command"]
                                                          or "--mrope-" in written["command"]) == bool(flags)
        assert written["layout_check_rel_error"] < 1e-4
        with om.Model(out / "avrecall-text.gguf", mmproj=out / "avrecall-mmproj.gguf") as model:
            assert (model.info.n_head, model.info.n_head_kv, model.info.n_layer, model.info.rope_sections[:3]) == \
                (trainer.TEXT["num_attention_heads"], *shape)
        starts[shape], = [d for d in (tmp_path / "work").glob("init-*") if d not in starts.values()]
    weights = {shape: load_file(d / "model.safetensors") for shape, d in starts.items()}
    towers = [k for k in weights[default] if k.startswith(("visual.", "audio_tower."))]
    assert towers and all(torch.equal(weights[default][k], w[k]) for k in towers for w in weights.values())
    k_proj = "model.layers.0.self_attn.k_proj.weight"
    assert weights[(4, *default[1:])][k_proj].shape[0] == 2 * weights[default][k_proj].shape[0]


def test_a_rope_section_must_share_out_a_heads_frequencies(trainer, capsys):
    for bad in ("12,2", "12,2,3", "a,b,c", "18,-1,-1"):
        with pytest.raises(SystemExit):
            trainer.build_parser().parse_args(["--mrope-section", bad])
        assert "add up to a head's 16" in capsys.readouterr().err
    assert trainer.build_parser().parse_args(["--mrope-section", "16,0,0"]).mrope_section == [16, 0, 0]


def test_the_shipped_report_is_of_the_shipped_pair_made_with_the_defaults(trainer):
    """docs/avrecall-training.json describes the pair in the package, and the script's defaults are its
    settings: `python scripts/train_avrecall_model.py` with no arguments remakes what ships."""
    import dataclasses

    report = json.loads((ROOT / "docs" / "avrecall-training.json").read_text())
    data = ROOT / "omnimem_cpp" / "data"
    assert report["files"] == {name: (data / name).stat().st_size for name in report["files"]}
    defaults = trainer.build_parser().parse_args([])
    assert defaults.phases is None and defaults.out_dir == data
    # the report was written before phases could be balanced; an unbalanced phase reads the same without it
    shipped = [{"balanced": False} | phase for phase in report["phases"]]
    assert shipped == [dataclasses.asdict(p) | {"kinds": list(p.kinds)} for p in trainer.PHASES]
    # made in runs from each other's text files: the first seven phases, then the rest from that text file
    assert sorted(report["hand_offs"] + [report["start_from"]["phases_done"]]) == list(trainer.HAND_OFFS)
    assert report["vision_tower"] == defaults.vision
    assert report["vision_pretraining"]["steps"] == defaults.vision_pretraining_steps
    assert (report["lr"], report["seed"]) == (defaults.lr, defaults.seed)
    assert (report["vision_block_gain"], report["modality_marker"]) == (defaults.vision_block_gain,
                                                                        defaults.modality_marker)
    assert report["text"]["num_key_value_heads"] == defaults.text_kv_heads and report["text"] == trainer.TEXT
