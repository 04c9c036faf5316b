"""Trains the small AV-Recall model that ships as omnimem_cpp/data/avrecall-text.gguf + avrecall-mmproj.gguf.

A Qwen2.5-Omni thinker (transformers classes) whose encoders are frozen while the language model learns.
Its training streams go through the real pipeline: AV-Recall chunks (frames and PCM) are preprocessed and
encoded by this project's native runtime from the projector file that ships, exactly as a stream does it,
so the model learns on the embeddings it will see. Questions follow each stream in the chat layout
`Stream.ask` uses; the loss is on the answer. The audio tower keeps its seeded random weights. The vision
tower, by default (`--vision pretrained`), is first trained alone to name, in every token over an object,
the object's shape and colour, then frozen (pretrain_vision_tower); `--vision frozen` keeps its random
weights and `--vision trained` trains it with the language model.

Positions far beyond the training streams: a stream's TMRoPE positions grow by 25 per second, so after 20
minutes a question sits 30,000 positions past the stream's start. Training streams are short (6-60 s), so
each is stretched at random: the gaps between chunks grow, as if it were a longer stream whose memory kept
only these chunks (which is what a bounded memory shows the model), up to 25 minutes of stream time.

    pip install '.[test]'
    python scripts/train_avrecall_model.py       # hours on 2 cores (stops and resumes); writes the GGUF pair
                                                 # and docs/avrecall-training.json
    python scripts/train_avrecall_model.py --phase 20:6-8@24 --out-dir try --work-dir try  # a try
    # the shipped pair trained further by a twelfth phase, without the checkpoints of the eleven default ones
    python scripts/train_avrecall_model.py --phase ... --phase 600:24-60@6/balanced \
        --start-from omnimem_cpp/data/avrecall-text.gguf --phases-done 11 --out-dir try --work-dir try
    # ... with two more decoder layers, added as identities (--grow-layers)
    python scripts/train_avrecall_model.py --phase ... --phase 600:24-60@6 --grow-layers 2 \
        --start-from omnimem_cpp/data/avrecall-text.gguf --phases-done 11 --out-dir try --work-dir try
    # the default phases from the start, with six decoder layers instead of four
    python scripts/train_avrecall_model.py --text-layers 6 --out-dir try --work-dir try

Everything is seeded; the same arguments give the same weights on the same machine and torch version.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import pathlib
import sys
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import tiny_models  # noqa: E402

import omnimem_cpp as om  # noqa: E402
from omnimem_cpp import chat  # noqa: E402
from omnimem_cpp.avrecall import (KINDS, AVRecallConfig, AVRecallStream, Timeline, all_questions,  # noqa: E402
                                  answer_vocabulary)
from omnimem_cpp.avrecall.layout import POSITIONS_PER_SECOND, StreamLayout, shift_chunks  # noqa: E402
from omnimem_cpp.convert import convert_checkpoint  # noqa: E402
from omnimem_cpp.convert.qwen25_omni import read_text_weights  # noqa: E402
from omnimem_cpp.media import VIDEO_PIXELS, image_patches  # noqa: E402

# Training streams use seeds from here on; the benchmark's streams use small seeds, so none is seen in training.
TRAIN_SEED_BASE = 1_000_000
# the vision tower's pretraining streams (held-out ones count down from here)
VISION_SEED_BASE = 5_000_000
MAX_STRETCH_SECONDS = 1500.0
QUESTIONS_PER_KIND = 5

TEXT = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, mrope_section=[4, 6, 6])
VISION = dict(depth=2, hidden_size=64, num_heads=2, intermediate_size=128, fullatt_block_indexes=[1],
              window_size=112, patch_size=14, temporal_patch_size=2, spatial_merge_size=2, in_channels=3)
AUDIO = dict(num_mel_bins=128, d_model=64, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128,
             n_window=100, max_source_positions=1500)


@dataclass(frozen=True)
class Phase:
    """A stage of the curriculum: ``steps`` optimizer steps, each on a new stream of ``shortest`` to
    ``longest`` seconds (even lengths) with ``events_per_minute`` visual and as many sound events.

    ``audio_only`` drops the video rows from the layout (the model hears the stream without seeing it);
    ``kinds`` limits the questions to those kinds, all of their questions asked at every step. Together
    they make a first phase that teaches retrieval where it is easiest to learn: finding a sound among
    few tokens, with the sound questions' gradient undiluted by the other kinds.

    ``balanced`` weighs each answer of a kind alike in the loss (answer_weights): a kind whose answer is
    mostly one word ("1" objects on screen at a sound) can then not be learned as that word."""

    steps: int
    shortest: int
    longest: int
    events_per_minute: float
    audio_only: bool = False
    kinds: tuple = ()
    balanced: bool = False

    FORM = "STEPS:SHORTEST-LONGEST@EVENTS_PER_MINUTE[/audio][/KIND,KIND...][/balanced]"

    @classmethod
    def parse(cls, text: str) -> "Phase":
        base, *extras = text.split("/")
        try:
            steps, rest = base.split(":")
            lengths, rate = rest.split("@")
            shortest, longest = lengths.split("-")
            phase = cls(int(steps), int(shortest), int(longest), float(rate))
        except ValueError:
            raise argparse.ArgumentTypeError(f"a phase is {cls.FORM}, got {text!r}") from None
        if phase.steps < 1 or not 2 <= phase.shortest <= phase.longest or phase.events_per_minute <= 0:
            raise argparse.ArgumentTypeError(f"{text!r}: steps must be positive, lengths 2 s or more, "
                                             "shortest <= longest, the event rate positive")
        known = [k for family_kinds in KINDS.values() for k in family_kinds]
        flags = ("audio", "balanced")
        audio_only, balanced, kinds = "audio" in extras, "balanced" in extras, ()
        for extra in (e for e in extras if e not in flags):
            if kinds or any(k not in known for k in extra.split(",")):
                raise argparse.ArgumentTypeError(
                    f"{text!r}: after '/' comes 'audio', 'balanced' or one list of question kinds, "
                    f"from {', '.join(known)}")
            kinds = tuple(extra.split(","))
        if audio_only and any(k not in KINDS["audio"] for k in kinds):
            raise argparse.ArgumentTypeError(f"{text!r}: an audio-only phase asks only {', '.join(KINDS['audio'])}")
        # questions about what cannot be seen make no sense: an audio-only phase asks the sound kinds
        return dataclasses.replace(phase, audio_only=audio_only, balanced=balanced,
                                   kinds=kinds or (KINDS["audio"] if audio_only else ()))

    def __str__(self) -> str:
        return (f"{self.steps}:{self.shortest}-{self.longest}@{self.events_per_minute:g}"
                + ("/audio" if self.audio_only else "") + ("/" + ",".join(self.kinds) if self.kinds else "")
                + ("/balanced" if self.balanced else ""))

    def dir_name(self) -> str:
        """The phase as a folder name's part."""
        return str(self).replace(":", "x").replace("@", "at").replace("/", "_").replace(",", "+")

    def stream_config(self, seed: int) -> AVRecallConfig:
        """The stream of one step. Dense events come closer together (the benchmark's 3 a minute keep 6 s
        apart), so that a short stream holds enough of them to ask every kind of question."""
        seconds = np.random.default_rng(seed).choice(np.arange(self.shortest, self.longest + 2, 2))
        gap = min(6.0, max(2.0, 30.0 / self.events_per_minute))
        return AVRecallConfig(seconds=float(seconds), seed=seed, visual_events_per_minute=self.events_per_minute,
                              sound_events_per_minute=self.events_per_minute, min_event_gap=gap,
                              cross_modal_gap=min(2.0, gap / 2), n_questions=0)


# how much larger than unit-variance the frozen audio tower's convolution weights are drawn (build_checkpoint)
AUDIO_CONV_GAIN = 4.0

# the video rows' offset from the standardised towers' outputs, in units of a row's norm (standardise_towers)
MODALITY_MARKER = 0.5

# what each vision block adds to its tokens, against the block's input, as drawn (build_checkpoint): at 1 the
# random blocks mix each token's patch away, at 0.1 it stays readable (docs/avrecall.md)
VISION_BLOCK_GAIN = 0.1

# streams the vision tower learns to name each slot's contents from, with --vision pretrained
VISION_PRETRAINING_STEPS = 1500

# whether an object appeared, asked alone first (it is not learned after other kinds); then with the sounds
# until both are clean; then every kind on short dense streams, and on longer sparser ones; then the colours
# on streams where several objects are on screen at once, since on short ones the only object in view mostly
# holds the answer (docs/avrecall.md, "what the training runs taught")
_PRESENCE, _BOTH = ("object_appeared",), ("sound_played", "object_appeared")
_COLOURS = ("appear_colour", "colour_at_sound")
PHASES = (Phase(3000, 6, 12, 24.0, kinds=_PRESENCE), Phase(3000, 6, 12, 24.0, kinds=_BOTH),
          Phase(4000, 6, 12, 24.0, kinds=_BOTH), Phase(4000, 6, 12, 24.0, kinds=_BOTH),
          Phase(4000, 6, 12, 24.0), Phase(4000, 6, 12, 24.0), Phase(600, 24, 60, 6.0),
          Phase(1500, 12, 30, 24.0, kinds=_COLOURS), Phase(1200, 12, 30, 12.0),
          Phase(2000, 12, 30, 24.0, kinds=_COLOURS), Phase(600, 24, 60, 6.0))

# the shipped pair was trained in three runs, each from the text file (F16) of the one before: the default
# run goes through those files after these phases too, so that it makes the same weights (--hand-off-after)
HAND_OFFS = (7, 9)


def train_stream_config(phase_index: int, phase: Phase, step: int) -> AVRecallConfig:
    """The stream of one training step: every step sees a stream of its own (a model that saw a stream
    twice could learn its answers by heart)."""
    return phase.stream_config(TRAIN_SEED_BASE + 100_000 * phase_index + step)


# streams of a balanced phase whose answers are counted for its weights, and the most an answer may weigh
BALANCE_STREAMS = 300
MAX_ANSWER_WEIGHT = 5.0


def answer_weights(phase_index: int, phase: Phase, n_streams: int = BALANCE_STREAMS) -> dict:
    """{(kind, answer): weight} for a balanced phase: over the questions of its first ``n_streams`` training
    streams, each answer of a kind then weighs as much in all as any other (1 / (answers of the kind × the
    answer's share)), capped at MAX_ANSWER_WEIGHT so that a rare answer does not take the step over."""
    counts: dict = {}       # kind -> Counter of its answers
    for step in range(n_streams):
        cfg = train_stream_config(phase_index, phase, step)
        for q in all_questions(cfg, Timeline(cfg)):
            if not phase.kinds or q.kind in phase.kinds:
                counts.setdefault(q.kind, Counter())[q.answer] += 1
    weights = {}
    for kind, by_answer in counts.items():
        total = sum(by_answer.values())
        for answer, n in by_answer.items():
            weights[(kind, answer)] = min(MAX_ANSWER_WEIGHT, total / (len(by_answer) * n))
    return weights


def question_corpus(n_streams: int = 200) -> list:
    """Lines the tokenizer learns from: questions and answers as the chat layout writes them."""
    lines = []
    for i in range(n_streams):
        cfg = AVRecallConfig(seconds=60.0, seed=TRAIN_SEED_BASE - 1 - i, n_questions=0)
        s = AVRecallStream(cfg)
        lines += [f"user\n{q.text}\nassistant\n{q.answer}\n" for q in s.questions or all_questions(cfg, s.timeline)]
    lines += [f"{w}\n" for w in answer_vocabulary(AVRecallConfig())] * 50
    return lines


def build_checkpoint(out_dir: pathlib.Path, seed: int, vision_block_gain: float = VISION_BLOCK_GAIN,
                     text: dict = TEXT) -> pathlib.Path:
    """The untrained thinker: tokenizer, config and seeded weights (encoders drawn wide enough to keep their
    input's information; the language model as transformers initialises it). ``vision_block_gain`` scales
    what each vision block adds to its residual stream: below 1 the random blocks mix the patches less, and
    each token keeps more of its own patch (scripts/probe_avrecall_features.py --vision-block-gain).
    ``text`` is the language model's shape (TEXT, or TEXT with other key/value heads); the towers' weights
    do not depend on it."""
    from transformers import AutoTokenizer, Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

    tiny_models.train_tokenizer(out_dir, vocab_size=1024, corpus=tuple(question_corpus()))
    tok = AutoTokenizer.from_pretrained(out_dir)
    ids = {t: tok.convert_tokens_to_ids(t) for t, _ in tiny_models.ADDED_TOKENS}
    text = dict(text, vocab_size=int(math.ceil(len(tok) / 64) * 64), tie_word_embeddings=False,
                rope_scaling={"mrope_section": text["mrope_section"], "rope_type": "default"},
                max_position_embeddings=65536, rope_theta=1e6, rms_norm_eps=1e-6,
                bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    text.pop("mrope_section")
    cfg = Qwen2_5OmniThinkerConfig(
        text_config=text, vision_config=dict(VISION, out_hidden_size=text["hidden_size"]),
        audio_config=dict(AUDIO, output_dim=text["hidden_size"]),
        audio_token_index=ids["<|AUDIO|>"], image_token_index=ids["<|IMAGE|>"], video_token_index=ids["<|VIDEO|>"],
        audio_start_token_id=ids["<|audio_bos|>"], audio_end_token_id=ids["<|audio_eos|>"],
        vision_start_token_id=ids["<|vision_bos|>"], vision_end_token_id=ids["<|vision_eos|>"],
        tie_word_embeddings=False, torch_dtype="float32")
    torch.manual_seed(seed)
    model = Qwen2_5OmniThinkerForConditionalGeneration(cfg).float()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("visual.", "audio_tower.")):
                if p.dim() == 1:
                    p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(math.prod(p.shape[1:])))
        # the audio tower adds fixed sinusoidal positions to its convolutions' output: at unit gain those,
        # not the sound, carry most of each output row (docs/avrecall.md, "The model")
        model.audio_tower.conv1.weight.mul_(AUDIO_CONV_GAIN)
        model.audio_tower.conv2.weight.mul_(AUDIO_CONV_GAIN)
        for block in model.visual.blocks:
            for residual_branch_out in (block.attn.proj, block.mlp.down_proj):
                residual_branch_out.weight.mul_(vision_block_gain)
                residual_branch_out.bias.mul_(vision_block_gain)
    save_thinker(model, out_dir)
    return out_dir


def build_initial_model(init_dir: pathlib.Path, scratch: pathlib.Path, seed: int, modality_marker: float,
                        vision_block_gain: float, vision_pretraining_steps: int = 0, log=print,
                        text: dict = TEXT) -> dict:
    """The thinker training starts from, in ``init_dir``: seeded weights (build_checkpoint), the vision tower
    taught to name what is in each slot when ``vision_pretraining_steps`` > 0 (pretrain_vision_tower), then
    the frozen towers standardised (standardise_towers, measured in ``scratch``). Returns what was measured:
    the scales divided out, and the pretraining's held-out accuracy."""
    build_checkpoint(init_dir, seed, vision_block_gain, text)
    report = {}
    if vision_pretraining_steps:
        report["vision_pretraining"] = pretrain_vision_tower(init_dir, vision_pretraining_steps, seed, log)
    report["tower_output_scales"] = standardise_towers(init_dir, scratch, modality_marker)
    return report


class SlotLabels:
    """What the vision tower is taught to say in every token over an object's slot: the shape and the
    colour there ("none" for an empty slot and for the background). A token counts as over a slot when
    half of it lies in the slot's box; tokens that show a sliver of a box are left out of the loss. Visual
    events fall on whole seconds, so at 2 fps both frames of a token show the same objects."""

    IGNORE = -100

    def __init__(self, config: AVRecallConfig):
        self.shapes, self.colours = ("none",) + config.objects, ("none",) + config.colours

    def __call__(self, av: AVRecallStream, group: int) -> tuple:
        """Shape and colour targets [cells] of the tokens of the group-th frame pair (second ``group``)."""
        cover = av.slot_cover()
        shape = np.zeros(next(iter(cover.values())).shape, np.int64)
        colour = shape.copy()
        for share in cover.values():
            sliver = (share > 0) & (share < 0.5)
            shape[sliver] = colour[sliver] = self.IGNORE
        for obj, (c, slot) in av.timeline.state_at(group * 2 / av.config.fps).items():
            inside = cover[slot] >= 0.5
            shape[inside], colour[inside] = self.shapes.index(obj), self.colours.index(c)
        return shape.reshape(-1), colour.reshape(-1)


def pretrain_vision_tower(hf_dir: pathlib.Path, steps: int, seed: int, log, seconds: float = 12.0,
                          lr: float = 2e-3, n_eval: int = 12) -> dict:
    """Trains the thinker's vision tower (and its merger) alone, before the language model: a linear read-out
    of every output token must give the shape and colour of the object in the token's slot (SlotLabels).
    Random towers leave an object's shape spread over several tokens and mixed with the background, where
    no run of the language model learned to find it (docs/avrecall.md). Each step is a new stream with
    dense visual events; the tower is then frozen for the language model's training. Returns the curve
    and the held-out accuracy on tokens that show an object, and on the rest."""
    thinker = tiny_models.load_thinker(hf_dir)
    vision = thinker.visual.train()
    labels = SlotLabels(AVRecallConfig())
    torch.manual_seed(seed)
    head = torch.nn.Linear(TEXT["hidden_size"], len(labels.shapes) + len(labels.colours))
    params = list(vision.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    phase = Phase(1, int(seconds), int(seconds), 30.0)

    def tokens_and_targets(stream_seed: int) -> tuple:
        av = AVRecallStream(phase.stream_config(stream_seed))
        frames = np.concatenate([c.video for c in av])
        patches, grid = image_patches(frames[:len(frames) // 2 * 2], **VIDEO_PIXELS)
        out = vision(torch.from_numpy(patches.astype(np.float32)), grid_thw=torch.tensor([list(grid)]))
        targets = [labels(av, g) for g in range(grid[0])]
        shape, colour = (torch.from_numpy(np.concatenate(t)) for t in zip(*targets))
        logits = head(out)
        return logits[:, :len(labels.shapes)], logits[:, len(labels.shapes):], shape, colour

    curve, window = [], []
    bar = tqdm(range(steps), desc="vision tower", unit="step")
    for step in bar:
        shape_logits, colour_logits, shape, colour = tokens_and_targets(VISION_SEED_BASE + step)
        loss = (torch.nn.functional.cross_entropy(shape_logits, shape, ignore_index=SlotLabels.IGNORE)
                + torch.nn.functional.cross_entropy(colour_logits, colour, ignore_index=SlotLabels.IGNORE))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        window.append(loss.item())
        if len(window) == 50 or step == steps - 1:
            curve.append({"step": step + 1, "loss": round(float(np.mean(window)), 4)})
            window = []
        bar.set_postfix(loss=f"{loss.item():.3f}")
    vision.eval()
    hits = {"object": [], "none": []}
    with torch.no_grad():
        for k in range(n_eval):
            shape_logits, colour_logits, shape, colour = tokens_and_targets(VISION_SEED_BASE - 1 - k)
            for logits, target in ((shape_logits, shape), (colour_logits, colour)):
                scored = target != SlotLabels.IGNORE
                right = (logits.argmax(1) == target)[scored]
                hits["object"] += right[target[scored] > 0].tolist()
                hits["none"] += right[target[scored] == 0].tolist()
    result = {"steps": steps, "lr": lr, "seconds": seconds, "curve": curve,
              "held_out_accuracy": {k: round(float(np.mean(v)), 4) for k, v in hits.items()}}
    log(f"vision tower: held-out shape and colour read-out {result['held_out_accuracy']['object']:.1%} on "
        f"tokens over an object, {result['held_out_accuracy']['none']:.1%} elsewhere")
    save_thinker(thinker, hf_dir)
    return result


def standardise_towers(hf_dir: pathlib.Path, scratch: pathlib.Path, marker: float, n_streams: int = 8) -> dict:
    """Centres and scales what each frozen tower passes on, then moves the video rows off centre, all folded
    into the towers' last projections.

    Random towers give outputs that share one large direction (mean cosine 0.87 between audio tokens),
    which leaves what tells sounds apart a small part of every row, and the language model did not learn
    to find sounds on them. Centred outputs lose what tells an audio row from a video row, though, and a
    question about a sound then spreads its attention over the far more numerous video rows. So the video
    rows get a fixed offset along a random direction, ``marker`` times the rows' own norm; the audio rows
    stay centred. Measured on the runtime's own encodings of a few streams (not the training ones);
    returns the scales divided out."""
    scratch.mkdir(parents=True, exist_ok=True)
    text, projector = scratch / "text.gguf", scratch / "mmproj.gguf"
    convert_checkpoint(hf_dir, text, "f32", mmproj=projector, mmproj_outtype="f32", progress=False)
    visual, audio = [], []
    with om.Model(text, mmproj=projector) as model:
        for k in range(n_streams):
            cfg = Phase(1, 12, 12, 24.0).stream_config(TRAIN_SEED_BASE - 20_000 - k)
            with model.stream() as s:
                layout = StreamLayout(s).encode(AVRecallStream(cfg))
            is_video = layout["is_video"]
            visual.append(layout["embeddings"][is_video])
            audio.append(layout["embeddings"][~is_video])
    thinker = tiny_models.load_thinker(hf_dir)
    n_embd = TEXT["hidden_size"]
    direction = torch.nn.functional.normalize(torch.randn(n_embd, generator=torch.Generator().manual_seed(0)), dim=0)
    scales = {}
    with torch.no_grad():
        for name, layer, rows, offset in (
                ("visual", thinker.visual.merger.mlp[2], np.concatenate(visual), marker * math.sqrt(n_embd) * direction),
                ("audio", thinker.audio_tower.proj, np.concatenate(audio), 0.0)):
            scale = float(rows.std(0).mean())
            layer.weight.div_(scale)
            layer.bias.sub_(torch.from_numpy(rows.mean(0))).div_(scale).add_(offset)
            scales[name] = scale
    save_thinker(thinker, hf_dir)
    return scales


def save_thinker(model, out_dir: pathlib.Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, out_dir / "model.safetensors", metadata={"format": "pt"})
    cfg = model.config.to_dict()
    cfg["architectures"] = ["Qwen2_5OmniThinkerForConditionalGeneration"]
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))


# --- the stream's token layout, reproduced on the native encoders' outputs --------------------------------

def video_rows(layout: dict) -> np.ndarray:
    """Indices of a layout's video rows, block after block in the vision tower's output order."""
    merge = VISION["spatial_merge_size"] ** 2
    return np.concatenate([first + np.arange(int(np.prod(grid)) // merge) for first, _, grid in layout["videos"]])


class Sequence:
    """One training example: a stream's layout (stretched in time at random) and its questions, as the
    language model's input embeddings, positions and answer targets."""

    def __init__(self, tokenizer, special: dict):
        self.tok, self.special = tokenizer, special

    def question_ids(self, question: str, answer: str) -> tuple:
        """Token ids of the closing tokens, the user turn and the answer, and how many end the answer."""
        prompt = self.tok.encode(chat.user_turn(question), add_special_tokens=False)
        answer_ids = self.tok.encode(answer, add_special_tokens=False) + [self.special["<|im_end|>"]]
        close = [self.special["<|audio_eos|>"], self.special["<|vision_eos|>"]]
        return close + prompt + answer_ids, len(answer_ids)

    def stream_inputs(self, embed, layout: dict, positions: np.ndarray, vision=None) -> tuple:
        """The stream's input embeddings [1, n, n_embd] (the two opening tokens, then the media) and their
        positions [n, 3], the opening tokens at 0. With ``vision`` (the thinker's vision tower) the video
        rows are its output on the layout's patches, so that gradients reach it."""
        opening = embed(torch.tensor([self.special["<|vision_bos|>"], self.special["<|audio_bos|>"]]))
        media = torch.from_numpy(layout["embeddings"].astype(np.float32))
        if vision is not None and layout["videos"]:
            patches = torch.from_numpy(np.concatenate([p for _, p, _ in layout["videos"]]).astype(np.float32))
            grids = torch.tensor([list(grid) for _, _, grid in layout["videos"]])
            media = media.index_copy(0, torch.from_numpy(video_rows(layout)), vision(patches, grid_thw=grids))
        return torch.cat([opening, media])[None], np.concatenate([np.zeros((2, 3), np.int64), positions])

    def asked(self, embed, layout: dict, question: str, vision=None) -> tuple:
        """The stream (at its own positions) followed by ``question``, up to the position that predicts
        the answer's first token: input embeddings [1, n, n_embd] and position ids [3, 1, n]."""
        ids, _ = self.question_ids(question, "")
        ids = ids[:-1]
        stream_inputs, stream_pos = self.stream_inputs(embed, layout, layout["positions"], vision)
        inputs = torch.cat([stream_inputs, embed(torch.tensor(ids))[None]], dim=1)
        text_pos = self.question_positions(stream_pos, len(ids))
        pos = np.concatenate([stream_pos, np.repeat(text_pos[:, None], 3, axis=1)])
        return inputs, torch.from_numpy(pos.T.copy())[:, None, :]

    def packed_questions(self, questions: list, stream_positions: np.ndarray) -> dict:
        """``questions`` ((text, answer) pairs) side by side in one row after the stream, each seeing the
        stream and itself only, so that the stream's K/V serves them all without a copy per question:
        token ids [1, m], answer targets [m] (-100 elsewhere), position ids [3, 1, m], the attention
        mask [1, 1, m, n + m] (True: may attend) over the stream's n rows and the row, which question each
        token belongs to, and where each question's answer starts."""
        rows = [self.question_ids(*q) for q in questions]
        lengths = torch.tensor([len(ids) for ids, _ in rows])
        n, m = len(stream_positions), int(lengths.sum())
        targets = torch.full((m,), -100)
        mask = torch.zeros((m, n + m), dtype=torch.bool)
        mask[:, :n] = True
        question_of = torch.repeat_interleave(torch.arange(len(rows)), lengths)
        positions, first_answer, start = [], [], 0
        for ids, n_answer in rows:
            end = start + len(ids)
            targets[end - n_answer - 1:end - 1] = torch.tensor(ids[-n_answer:])
            mask[start:end, n + start:n + end] = torch.ones(len(ids), len(ids), dtype=torch.bool).tril()
            positions.append(self.question_positions(stream_positions, len(ids)))
            first_answer.append(end - n_answer - 1)
            start = end
        pos = torch.from_numpy(np.concatenate(positions))
        return {"ids": torch.tensor([t for ids, _ in rows for t in ids])[None], "targets": targets,
                "position_ids": pos[None, None, :].expand(3, 1, m), "mask": mask[None, None],
                "question_of": question_of, "first_answer": torch.tensor(first_answer)}

    @staticmethod
    def question_positions(stream_positions: np.ndarray, n: int) -> np.ndarray:
        """Positions of the n tokens after the stream: the two closing tokens share max + 1, text follows."""
        first = int(stream_positions.max()) + 1
        return np.concatenate([[first], np.arange(first, first + n - 1)])

    @staticmethod
    def stretch(layout: dict, rng: np.random.Generator) -> np.ndarray:
        """The layout's positions with the gaps between chunks widened at random (none half of the time), as
        if the stream were longer and only these chunks were kept (:func:`shift_chunks`)."""
        n_chunks = int(layout["chunk"].max()) + 1
        if rng.random() < 0.5:
            return layout["positions"].astype(np.int64)
        extra = rng.uniform(0, MAX_STRETCH_SECONDS) * POSITIONS_PER_SECOND
        cuts = rng.dirichlet(np.full(n_chunks, 0.3)) * extra
        return shift_chunks(layout, np.floor(np.cumsum(cuts)))


class TrainingStreams:
    """The encoded training stream of each step, made on the fly by the native encoders (no file: a
    stream takes a fraction of a training step to render and encode). With ``train_vision`` the video
    rows are left to the vision tower being trained."""

    def __init__(self, model: om.Model, phase_index: int, phase: Phase, train_vision: bool):
        self.model, self.phase_index, self.phase, self.train_vision = model, phase_index, phase, train_vision
        self.answer_weights = answer_weights(phase_index, phase) if phase.balanced else None

    def __call__(self, step: int) -> dict:
        cfg = train_stream_config(self.phase_index, self.phase, step)
        av = AVRecallStream(cfg)
        audio_only = self.phase.audio_only
        with self.model.stream() as s:
            data = StreamLayout(s, native_video=not (self.train_vision or audio_only)).encode(av)
        if audio_only:
            keep = ~data["is_video"]
            data.update({k: data[k][keep] for k in ("embeddings", "positions", "chunk", "is_video")}, videos=[])
        by_kind = {}
        for q in all_questions(cfg, av.timeline):
            if not self.phase.kinds or q.kind in self.phase.kinds:
                by_kind.setdefault(q.kind, []).append((q.text, q.answer))
        data["questions"] = by_kind
        # a phase limited to a few kinds asks all of their questions; otherwise as many of each kind
        data["per_kind"] = max(map(len, by_kind.values()), default=0) if self.phase.kinds else QUESTIONS_PER_KIND
        data["answer_weights"] = self.answer_weights
        return data


def answer_logits(text_model, head, seq: Sequence, layout: dict, positions: np.ndarray, questions: list,
                  vision=None) -> tuple:
    """The stream (``layout`` at ``positions``) read once, then ``questions`` packed after it
    (Sequence.packed_questions): the logits [m, vocab] at the packed tokens, and the packed batch."""
    embed = text_model.get_input_embeddings()
    inputs, pos = seq.stream_inputs(embed, layout, positions, vision)
    out = text_model(inputs_embeds=inputs, position_ids=torch.from_numpy(pos.T.copy())[:, None, :], use_cache=True)
    batch = seq.packed_questions(questions, pos)
    hidden = text_model(inputs_embeds=embed(batch["ids"]),
                        position_ids=batch["position_ids"], attention_mask=batch["mask"],
                        past_key_values=out.past_key_values, use_cache=True).last_hidden_state
    return head(hidden[0]), batch


def answer_loss(logits: torch.Tensor, targets: torch.Tensor, question_of: torch.Tensor, picked: list,
                weights) -> torch.Tensor:
    """The cross-entropy on the answer tokens of packed questions (logits [m, vocab], targets [m], -100 off
    the answers), their mean; with ``weights`` ({(kind, answer): weight}, answer_weights) each token counts
    by the weight of its question's answer (``question_of`` [m]: the token's index in ``picked``)."""
    if weights is None:
        return torch.nn.functional.cross_entropy(logits, targets)
    per_token = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    question_weight = torch.tensor([weights.get((kind, answer), MAX_ANSWER_WEIGHT) for kind, (_, answer) in picked])
    token_weight = question_weight[question_of] * (targets != -100)
    return (per_token * token_weight).sum() / token_weight.sum()


def train(hf_dir: pathlib.Path, streams: TrainingStreams, steps: int, lr: float, seed: int, log,
          checkpoint_every: int = 100) -> dict:
    """Trains the language model of the thinker in hf_dir in place (and its vision tower when the streams
    leave the video to it); returns the training curve.

    Every ``checkpoint_every`` steps the weights, optimizer and random states go to hf_dir/checkpoint.pt, and
    a run with the same arguments continues from there, ending with the weights an uninterrupted run gives."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    special = {t: tok.convert_tokens_to_ids(t) for t, _ in tiny_models.ADDED_TOKENS}
    model = tiny_models.load_thinker(hf_dir).train()
    text_model, head = model.model, model.lm_head
    vision = model.visual if streams.train_vision else None
    params = list(text_model.parameters()) + list(head.parameters()) + \
        (list(vision.parameters()) if vision is not None else [])
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    seq = Sequence(tok, special)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    curve, window, first_step = [], [], 0
    checkpoint = hf_dir / "checkpoint.pt"
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        curve, first_step = state["curve"], state["step"]
        log(f"continuing from step {first_step} ({checkpoint})")
    # training time so far, carried across resumes (checkpoints fall on curve points)
    seconds_before, resumed_at = (curve[-1].get("seconds", 0.0) if curve else 0.0), time.time()
    bar = tqdm(range(first_step, steps), desc="training", unit="step", initial=first_step, total=steps)

    def learn(data: dict, stretch, picked: list) -> tuple:
        """One optimizer step on a stream and its picked questions; (loss, whether each first answer token
        was right)."""
        logits, batch = answer_logits(text_model, head, seq, data, stretch, [q for _, q in picked], vision)
        loss = answer_loss(logits, batch["targets"], batch["question_of"], picked, data.get("answer_weights"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        first = batch["first_answer"]
        hits = (logits[first].argmax(-1) == batch["targets"][first]).tolist()
        return loss.item(), hits

    for step in bar:
        data = streams(step)
        stretch = seq.stretch(data, rng)
        # the same number of each kind (where there are enough), so that the kinds with many questions
        # (pairs of names) do not crowd out the others
        picked = [(kind, qs[i]) for kind, qs in data["questions"].items()
                  for i in rng.choice(len(qs), size=min(len(qs), data["per_kind"]), replace=False)]
        if picked:      # a phase asking a few kinds meets streams with none of them: those teach nothing
            loss, hits = learn(data, stretch, picked)
            window.append((loss, [(kind, hit) for (kind, _), hit in zip(picked, hits)]))
        sched.step()
        if window and ((step + 1) % 50 == 0 or step == steps - 1):
            answers = [a for _, step_answers in window for a in step_answers]
            by_kind = {k: round(float(np.mean([h for kk, h in answers if kk == k])), 3)
                       for k in dict.fromkeys(k for k, _ in answers)}
            point = {"step": step + 1, "loss": round(float(np.mean([w[0] for w in window])), 4),
                     "accuracy": round(float(np.mean([h for _, h in answers])), 4), "by_kind": by_kind,
                     "seconds": round(seconds_before + time.time() - resumed_at, 1)}
            curve.append(point)
            log(f"step {step + 1}: loss {point['loss']:.4f}, answer accuracy {point['accuracy']:.3f} "
                f"({', '.join(f'{k} {v:.2f}' for k, v in by_kind.items())})")
            window = []
        if window:
            bar.set_postfix(loss=f"{window[-1][0]:.3f}")
        if (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "curve": curve,
                        "step": step + 1}, checkpoint.with_suffix(".tmp"))
            checkpoint.with_suffix(".tmp").replace(checkpoint)
    checkpoint.unlink(missing_ok=True)
    model.eval()
    save_thinker(model, hf_dir)
    return {"curve": curve}


def check_layout(model: om.Model, hf_dir: pathlib.Path, seconds: float = 6.0) -> float:
    """The largest difference between the runtime's logits after a streamed clip and a question, and the
    transformers model's on the reproduced layout with its own vision tower: proves the training sees what
    the runtime will feed."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    special = {t: tok.convert_tokens_to_ids(t) for t, _ in tiny_models.ADDED_TOKENS}
    av = AVRecallStream(AVRecallConfig(seconds=seconds, seed=TRAIN_SEED_BASE - 10_000, n_questions=0))
    question = "Did the alpha sound play?"
    with model.stream(kv_type="f32") as s:
        layout = StreamLayout(s).encode(av)
        for c in av:
            s.feed(c)
        s.feed(chat.user_turn(question))
        runtime = s.logits()
    thinker = tiny_models.load_thinker(hf_dir)
    with torch.no_grad():
        inputs, position_ids = Sequence(tok, special).asked(thinker.model.get_input_embeddings(), layout, question,
                                                           thinker.visual)
        hidden = thinker.model(inputs_embeds=inputs, position_ids=position_ids)
        reference = thinker.lm_head(hidden.last_hidden_state)[0, -1].numpy()
    return float(np.abs(reference - runtime[:reference.size]).max() / np.abs(reference).max())


def mrope_section(text: str) -> list:
    """``T,H,W`` rotary frequency pairs for the time, height and width positions; together they are all of a
    head's pairs."""
    pairs = TEXT["hidden_size"] // TEXT["num_attention_heads"] // 2
    try:
        section = [int(n) for n in text.split(",")]
    except ValueError:
        section = []
    if len(section) != 3 or min(section) < 0 or sum(section) != pairs:
        raise argparse.ArgumentTypeError(f"{text!r}: give three counts of frequency pairs, T,H,W, that add up to "
                                         f"a head's {pairs}, e.g. " + ",".join(map(str, TEXT["mrope_section"])))
    return section


def build_parser() -> argparse.ArgumentParser:
    """The script's options; with none given they make the shipped pair."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=pathlib.Path, default=ROOT / "omnimem_cpp" / "data",
                        help="where the GGUF pair goes (default: the package's data folder)")
    parser.add_argument("--work-dir", type=pathlib.Path,
                        default=pathlib.Path.home() / ".cache" / "omnimem-cpp" / "avrecall-train",
                        help="checkpoints and the encoded training streams; a run with the same arguments "
                             "continues from what it finds there")
    parser.add_argument("--phase", type=Phase.parse, action="append", dest="phases",
                        metavar=Phase.FORM,
                        help="a curriculum phase (repeatable; default "
                             + " ".join(map(str, PHASES)) + ")")
    parser.add_argument("--vision", choices=("frozen", "pretrained", "trained"), default="pretrained",
                        help="keep the vision tower's random weights; teach it alone first to name each slot's "
                             "shape and colour in the slot's tokens, then freeze it (default, the shipped "
                             "model); or "
                             "train it with the language model, about 3x the time per step (the audio tower "
                             "stays frozen)")
    parser.add_argument("--vision-pretraining-steps", type=int, default=VISION_PRETRAINING_STEPS,
                        help=f"streams the pretrained vision tower learns from (default {VISION_PRETRAINING_STEPS})")
    parser.add_argument("--lr", type=float, default=5e-4,
                        help="peak learning rate (default 5e-4; at 2e-3 retrieval was never learned)")
    parser.add_argument("--modality-marker", type=float, default=MODALITY_MARKER,
                        help="the video rows' offset after the towers are standardised, in units of a row's "
                             f"norm (default {MODALITY_MARKER:g}; 0 leaves audio and video rows alike in distribution)")
    parser.add_argument("--vision-block-gain", type=float, default=VISION_BLOCK_GAIN,
                        help="scale of what each vision block adds to its tokens as drawn (default "
                             f"{VISION_BLOCK_GAIN:g}, the shipped towers, which keeps each token's own patch "
                             "readable; at 1 the random blocks mix it away: docs/avrecall.md)")
    parser.add_argument("--text-kv-heads", type=int, choices=(1, 2, 4), default=TEXT["num_key_value_heads"],
                        help="the language model's key/value heads, shared by its "
                             f"{TEXT['num_attention_heads']} query heads (default {TEXT['num_key_value_heads']})")
    parser.add_argument("--mrope-section", type=mrope_section, default=TEXT["mrope_section"], metavar="T,H,W",
                        help="how the language model's rotary frequencies are shared between the time, height "
                             "and width positions, highest frequencies first (default "
                             + ",".join(map(str, TEXT["mrope_section"])) + "); a video row's time is only in the "
                             "first share, so a larger one lets it reach lower frequencies: docs/avrecall.md")
    parser.add_argument("--text-layers", type=int, default=TEXT["num_hidden_layers"], metavar="N",
                        help=f"the language model's decoder layers (default {TEXT['num_hidden_layers']}); "
                             "a start from a text file keeps the file's, see --grow-layers")
    parser.add_argument("--start-from", type=pathlib.Path, metavar="TEXT.gguf",
                        help="take the language model from this text file (the shipped one, say) as the "
                             "outcome of the first --phases-done phases, and train only the phases after them; "
                             "its tokenizer must be the one these settings build")
    parser.add_argument("--phases-done", type=int, metavar="N",
                        help="with --start-from: how many of the --phase list the file has been trained on")
    parser.add_argument("--hand-off-after", type=int, action="append", dest="hand_offs", metavar="N",
                        help="after the first N phases, go on from the F16 text file they make, as a later run "
                             "--start-from that file would (repeatable; default with the default phases: "
                             + ", ".join(map(str, HAND_OFFS)) + ", the runs that made the shipped pair; none "
                             "with --phase)")
    parser.add_argument("--grow-layers", type=int, default=0, metavar="N",
                        help="with --start-from: add N decoder layers to the file's language model, spread "
                             "between its layers and drawn so that they change nothing until trained")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=pathlib.Path, default=ROOT / "docs" / "avrecall-training.json",
                        help="the training report: settings, the loss curve, file sizes")
    parser.add_argument("--threads", type=int, default=None, help="torch and runtime threads (default: all cores)")
    return parser


# the longest file name most file systems take
MAX_NAME = 255


def file_digest(path: pathlib.Path) -> str:
    """The first 10 hex digits of a file's SHA-1, which name the work folders built from it."""
    return hashlib.sha1(path.read_bytes()).hexdigest()[:10]


def phase_dir_name(init_digest: str, vision: str, lr: float, curriculum: list) -> str:
    """The work folder of a phase, named by the initial weights, the learning rate and every phase up to this
    one (``curriculum``): a changed start or curriculum never resumes another's checkpoint. A curriculum too
    long to spell out in a file name is named by a digest of it and its last phase."""
    head = f"trained-{init_digest}-{vision}-lr{lr:g}-"
    name = head + "+".join(p.dir_name() for p in curriculum)
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha1("+".join(map(str, curriculum)).encode()).hexdigest()[:12]
    return f"{head}{digest}-{curriculum[-1].dir_name()}"


def grow_text_layers(state: dict, config: dict, extra: int, seed: int) -> None:
    """Adds ``extra`` decoder layers to the language model in ``state`` (HF names) and ``config``, spread evenly
    between the old ones (with 4 and 2: old 0, 1, new, old 2, 3, new). A new layer is drawn as transformers
    draws one, except that the two projections writing into the residual stream (attention output, MLP down)
    are zero: it adds nothing until training moves them, so the grown model answers exactly as the file did."""
    text = config["text_config"]
    old = text["num_hidden_layers"]
    # how many new layers follow each old one (several, when there are more new than old)
    after = Counter(round((j + 1) * old / extra) - 1 for j in range(extra))
    prefix = "model.layers."
    layers = [{k[len(f"{prefix}{i}."):]: v for k, v in state.items() if k.startswith(f"{prefix}{i}.")}
              for i in range(old)]
    gen = torch.Generator().manual_seed(seed)

    def new_weight(name: str, like: torch.Tensor) -> torch.Tensor:
        if name.endswith("layernorm.weight"):
            return torch.ones_like(like)
        if name.endswith("bias") or name in ("self_attn.o_proj.weight", "mlp.down_proj.weight"):
            return torch.zeros_like(like)
        return torch.randn(like.shape, generator=gen) * text.get("initializer_range", 0.02)

    grown = []
    for i, layer in enumerate(layers):
        grown.append(layer)
        for _ in range(after[i]):
            grown.append({name: new_weight(name, w) for name, w in layer.items()})
    for k in [k for k in state if k.startswith(prefix)]:
        del state[k]
    for i, layer in enumerate(grown):
        state.update({f"{prefix}{i}.{name}": w for name, w in layer.items()})
    text["num_hidden_layers"] = len(grown)
    text["layer_types"] = [text["layer_types"][0]] * len(grown)


def start_from_text_file(init_dir: pathlib.Path, start_dir: pathlib.Path, text_file: pathlib.Path,
                         untrained_text: pathlib.Path, grow_layers: int = 0, seed: int = 0) -> None:
    """Writes into ``start_dir`` the initial thinker of ``init_dir`` (towers, tokenizer) with the language model
    of the converted ``text_file``, whose vocabulary must be that of ``untrained_text`` (converted from
    ``init_dir``): a file trained on another tokenizer would read every token as another. ``grow_layers``
    adds that many identity layers (grow_text_layers)."""
    from gguf import GGUFReader
    from safetensors.torch import load_file, save_file

    def tokens(path):
        field = GGUFReader(path).fields.get("tokenizer.ggml.tokens")
        return field and field.contents()

    if tokens(text_file) != tokens(untrained_text):
        raise SystemExit(f"{text_file}: its tokenizer is not the one these settings build; start from a text "
                         "file this script made with the same --seed")
    state = load_file(init_dir / "model.safetensors")
    config = json.loads((init_dir / "config.json").read_text())
    for name, weight in read_text_weights(text_file, config).items():
        state[name] = torch.from_numpy(weight.copy())
    if grow_layers:
        grow_text_layers(state, config, grow_layers, seed)
    start_dir.mkdir(parents=True, exist_ok=True)
    for f in init_dir.iterdir():
        if f.is_file() and f.name not in ("model.safetensors", "config.json"):
            (start_dir / f.name).write_bytes(f.read_bytes())
    (start_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    save_file(state, start_dir / "model.safetensors", metadata={"format": "pt"})


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    phases = args.phases or list(PHASES)
    hand_offs = sorted(set(args.hand_offs if args.hand_offs is not None else () if args.phases else HAND_OFFS))
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work_dir
    pretraining_steps = args.vision_pretraining_steps if args.vision == "pretrained" else 0
    if args.vision == "pretrained" and pretraining_steps < 1:
        parser.error("--vision-pretraining-steps must be at least 1")
    if args.text_layers < 1 or (args.text_layers != TEXT["num_hidden_layers"] and args.start_from is not None):
        parser.error("--text-layers takes a count of at least 1, and not with --start-from (the file has its "
                     "layers; --grow-layers adds to them)")
    if (args.start_from is None) != (args.phases_done is None):
        parser.error("--start-from and --phases-done go together")
    phases_done = args.phases_done or 0
    if args.start_from is not None:
        if not 1 <= phases_done < len(phases):
            parser.error(f"--phases-done must leave a phase to train: 1 to {len(phases) - 1} for "
                         f"{len(phases)} phases")
        if not args.start_from.is_file():
            parser.error(f"--start-from {args.start_from}: no such file")
    if args.grow_layers < 0 or (args.grow_layers and args.start_from is None):
        parser.error("--grow-layers takes a count of layers to add, and goes with --start-from")
    if any(not 1 <= n < len(phases) for n in hand_offs):
        parser.error(f"--hand-off-after takes a count of phases that leaves a phase after it: 1 to "
                     f"{len(phases) - 1} for {len(phases)} phases")
    # a hand-off at or before the file a run starts from happened before that file was written
    hand_offs = [n for n in hand_offs if n > phases_done]
    # named by everything the start depends on, since a resumed run takes the start it finds there
    text_shape = dict(TEXT, num_key_value_heads=args.text_kv_heads, num_hidden_layers=args.text_layers,
                      mrope_section=args.mrope_section)
    default_kv = args.text_kv_heads == TEXT["num_key_value_heads"]
    default_layers = args.text_layers == TEXT["num_hidden_layers"]
    section = ",".join(map(str, args.mrope_section))
    # the weights do not say how their rotary frequencies are shared: another share names other folders
    rope_suffix = "" if args.mrope_section == TEXT["mrope_section"] else f"-mrope{section.replace(',', '.')}"
    init_dir = work / (f"init-{args.seed}-gain{args.vision_block_gain:g}-marker{args.modality_marker:g}"
                       + (f"-vision{pretraining_steps}" if pretraining_steps else "")
                       + ("" if default_kv else f"-kv{args.text_kv_heads}")
                       + ("" if default_layers else f"-layers{args.text_layers}")
                       + rope_suffix)
    report = {"command": "python scripts/train_avrecall_model.py " + " ".join(
                  [f"--phase {p}" for p in phases] +
                  [f"--vision {args.vision}"] +
                  ([f"--vision-pretraining-steps {args.vision_pretraining_steps}"] if args.vision == "pretrained" else []) +
                  [f"--lr {args.lr}", f"--modality-marker {args.modality_marker}",
                   f"--vision-block-gain {args.vision_block_gain}"] +
                  ([] if default_kv else [f"--text-kv-heads {args.text_kv_heads}"]) +
                  ([] if default_layers else [f"--text-layers {args.text_layers}"]) +
                  ([f"--mrope-section {section}"] if rope_suffix else []) + [f"--seed {args.seed}"] +
                  ([f"--start-from {args.start_from.name} --phases-done {phases_done}"] if phases_done else []) +
                  [f"--hand-off-after {n}" for n in hand_offs] +
                  ([f"--grow-layers {args.grow_layers}"] if args.grow_layers else [])),
              "phases": [dataclasses.asdict(p) for p in phases], "hand_offs": hand_offs,
              "vision_tower": args.vision, "lr": args.lr,
              "seed": args.seed, "modality_marker": args.modality_marker, "vision_block_gain": args.vision_block_gain,
              "text": dict(text_shape, num_hidden_layers=text_shape["num_hidden_layers"] + args.grow_layers),
              "vision": VISION, "audio": AUDIO}
    log = tqdm.write

    started = time.time()
    init_dir.mkdir(parents=True, exist_ok=True)
    init_report = init_dir / "init.json"
    if not init_report.exists():           # a resumed run keeps the start it made (the same, seeded)
        init_report.write_text(json.dumps(build_initial_model(
            init_dir, work / "standardise", args.seed, args.modality_marker, args.vision_block_gain,
            pretraining_steps, log, text_shape)))
    report.update(json.loads(init_report.read_text()))
    towers_digest = file_digest(init_dir / "model.safetensors") + rope_suffix
    mmproj = args.out_dir / "avrecall-mmproj.gguf"
    untrained_text = work / "untrained-text.gguf"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    convert_checkpoint(init_dir, untrained_text, "f32", mmproj=mmproj, mmproj_outtype="f32", progress=False)
    # the weights the next phase starts from, and the digest that names the phase folders after them
    previous, start_digest = init_dir, towers_digest

    def start_from(text_file: pathlib.Path, text_digest: str, grow_layers: int = 0) -> tuple:
        """The start folder holding the language model of ``text_file`` on this run's towers, and its digest."""
        start = work / (f"start-{towers_digest}-{text_digest}" + (f"-grow{grow_layers}" if grow_layers else ""))
        start_from_text_file(init_dir, start, text_file, untrained_text, grow_layers, args.seed)
        return start, file_digest(start / "model.safetensors") + rope_suffix

    if args.start_from is not None:
        text_digest = file_digest(args.start_from)
        previous, start_digest = start_from(args.start_from, text_digest, args.grow_layers)
        report["start_from"] = {"file": args.start_from.name, "phases_done": phases_done, "sha1": text_digest,
                                "grown_layers": args.grow_layers}
    with om.Model(untrained_text, mmproj=mmproj, n_threads=args.threads) as model:
        report["layout_check_rel_error"] = check_layout(model, init_dir)
        log(f"runtime vs reproduced layout: max relative logit difference {report['layout_check_rel_error']:.2e}")
        for k, phase in enumerate(phases):
            if k < phases_done:
                continue
            if k in hand_offs:
                hand_off = work / f"hand-off-{k}-text.gguf"
                convert_checkpoint(previous, hand_off, "f16", progress=False)
                previous, start_digest = start_from(hand_off, file_digest(hand_off))
                log(f"after phase {k}: going on from its F16 text file ({hand_off.name})")
            phase_dir = work / phase_dir_name(start_digest, args.vision, args.lr, phases[:k + 1])
            done = phase_dir / "curve.json"
            if not done.exists():
                phase_dir.mkdir(parents=True, exist_ok=True)
                if not (phase_dir / "checkpoint.pt").exists():
                    for f in previous.iterdir():
                        if f.is_file() and f.name != "curve.json":
                            (phase_dir / f.name).write_bytes(f.read_bytes())
                log(f"phase {k + 1}: {phase.steps} steps on streams of {phase.shortest}-{phase.longest} s")
                streams = TrainingStreams(model, k, phase, train_vision=args.vision == "trained")
                curve = train(phase_dir, streams, phase.steps, args.lr, args.seed + k, log)["curve"]
                done.write_text(json.dumps(curve))
            report[f"phase{k + 1}"] = {"curve": json.loads(done.read_text())}
            previous = phase_dir
    text = args.out_dir / "avrecall-text.gguf"
    # a trained vision tower means a new projector; a frozen one keeps the file written at the start
    projector = dict(mmproj=mmproj, mmproj_outtype="f32") if args.vision == "trained" else {}
    convert_checkpoint(previous, text, "f16", progress=False, **projector)
    # the trained pair, its text model in F32, against transformers: the runtime runs what was trained
    trained_text = work / "trained-text-f32.gguf"
    convert_checkpoint(previous, trained_text, "f32", progress=False)
    with om.Model(trained_text, mmproj=mmproj, n_threads=args.threads) as model:
        report["trained_check_rel_error"] = check_layout(model, previous)
    log(f"trained model, runtime vs transformers: max relative logit difference "
        f"{report['trained_check_rel_error']:.2e}")
    report["minutes_this_run"] = round((time.time() - started) / 60, 1)
    # the phases' training steps over every run that resumed them (older curves have no times)
    report["training_minutes"] = round(sum(report[f"phase{k + 1}"]["curve"][-1].get("seconds", 0.0)
                                           for k in range(phases_done, len(phases))) / 60, 1)
    report["files"] = {p.name: p.stat().st_size for p in (text, mmproj)}
    args.report.write_text(json.dumps(report, indent=1))
    log(f"wrote {text} and {mmproj} ({sum(report['files'].values()) / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
