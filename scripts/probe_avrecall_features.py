"""What the frozen encoders of an AV-Recall projector pass on: probes on their embeddings.

The shipped model's towers are frozen: the audio tower at its random weights, the vision tower after it was
taught alone to name each slot's contents; only the language model learned from the questions. This
script asks how readable the towers' outputs are. It encodes fresh AV-Recall streams with
the shipped projector (or `--mmproj`), exactly as a stream does, and fits small classifiers on the embeddings:
- For each object slot: the tokens at least half inside the slot's box (3 rows x 2 columns of 28-px cells)
  against the colour and the shape of the object there, or "none". There are two probes: a linear one on their mean,
  and a one-hidden-layer MLP on the six tokens side by side.
- For each second of audio: the mean of its 25 tokens against the symbol that plays then, or "none".

Every probe is trained on the first 70 % of the streams and scored on the rest; "prior" is the accuracy
of always answering the commonest training label. The probes standardise their inputs; the language model
does not, so the script also prints the embeddings' geometry: their mean norm against the text model's
token embeddings, and how alike two tokens of a modality are (mean cosine similarity).

    python scripts/probe_avrecall_features.py [--streams 60] [--seconds 20]

``--vision-block-gain G`` probes untrained towers instead: the training script's initial thinker with its
vision blocks' residual branches scaled by G, standardised as the training script does it. With
``--vision-pretraining-steps N`` as well, its vision tower is first taught to name each slot's contents
(the training script's ``--vision pretrained``).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import train_avrecall_model as recipe  # noqa: E402

import omnimem_cpp as om  # noqa: E402
from omnimem_cpp.avrecall import AVRecallConfig, AVRecallStream  # noqa: E402
from omnimem_cpp.avrecall.bench import MODEL, PROJECTOR  # noqa: E402
from omnimem_cpp.avrecall.config import AUDIO_TOKENS_PER_SECOND, PATCH_PIXELS  # noqa: E402
from omnimem_cpp.avrecall.layout import StreamLayout, first_second  # noqa: E402
from omnimem_cpp.gguf_info import token_embeddings  # noqa: E402

PROBE_SEED_BASE = 3_000_000      # neither a benchmark seed nor a training one


def collect(model: om.Model, n_streams: int, seconds: float) -> dict:
    """Per stream: slot features and labels, audio-second features and labels."""
    data = []
    for k in range(n_streams):
        cfg = AVRecallConfig(seconds=seconds, seed=PROBE_SEED_BASE + k, visual_events_per_minute=9.0,
                             sound_events_per_minute=9.0, min_event_gap=4.0, n_questions=0)
        av = AVRecallStream(cfg)
        with model.stream() as s:
            layout = StreamLayout(s).encode(av)
        grid_rows, grid_cols = cfg.height // PATCH_PIXELS, cfg.width // PATCH_PIXELS
        slots, audio = [], []
        is_video = layout["is_video"]
        for first, _, grid in layout["videos"]:
            t = grid[0]
            block = layout["embeddings"][first:first + t * grid_rows * grid_cols]
            for g, tokens in enumerate(block.reshape(t, grid_rows, grid_cols, -1)):
                second = first_second(layout, first) + g
                state = {slot: (obj, colour) for obj, (colour, slot) in av.timeline.state_at(second + 0.5).items()}
                for slot, share in av.slot_cover().items():
                    obj, colour = state.get(slot, (None, None))
                    slots.append((tokens[share >= 0.5], obj, colour))
        sounds = {int(e.time): e.symbol for e in av.timeline.sounds()}
        audio_tokens = layout["embeddings"][~is_video]
        for second in range(len(audio_tokens) // AUDIO_TOKENS_PER_SECOND):
            window = audio_tokens[second * AUDIO_TOKENS_PER_SECOND:(second + 1) * AUDIO_TOKENS_PER_SECOND]
            audio.append((window.mean(0), sounds.get(second)))
        data.append((slots, audio, layout["embeddings"][is_video], audio_tokens))
    return data


def geometry(name: str, rows: np.ndarray) -> str:
    rows = rows[np.linalg.norm(rows, axis=1) > 0]          # the padding rows of an embedding table
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    sample = unit[np.random.default_rng(0).choice(len(unit), size=min(2000, len(unit)), replace=False)]
    return (f"| {name} | {np.linalg.norm(rows, axis=1).mean():.2f} | {float((sample @ sample.T).mean()):.2f} |")


def probe(train_x, train_y, test_x, test_y, hidden: int = 0, seed: int = 0) -> tuple:
    """Test accuracy of a classifier (linear, or an MLP with ``hidden`` units) and the majority prior."""
    torch.manual_seed(seed)
    labels = sorted(set(train_y) | set(test_y), key=str)
    to_index = {label: i for i, label in enumerate(labels)}
    x, xt = (torch.tensor(np.asarray(a), dtype=torch.float32) for a in (train_x, test_x))
    y, yt = (torch.tensor([to_index[v] for v in a]) for a in (train_y, test_y))
    mean, std = x.mean(0), x.std(0) + 1e-6
    x, xt = (x - mean) / std, (xt - mean) / std
    net = (torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.GELU(),
                               torch.nn.Linear(hidden, len(labels)))
           if hidden else torch.nn.Linear(x.shape[1], len(labels)))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(1000):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = (net(xt).argmax(1) == yt).float().mean().item()
    prior = (yt == torch.bincount(y).argmax()).float().mean().item()
    return accuracy, prior


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--model", type=pathlib.Path, default=MODEL)
    parser.add_argument("--mmproj", type=pathlib.Path, default=PROJECTOR)
    parser.add_argument("--vision-block-gain", type=float,
                        help="probe the training script's untrained towers with this vision block gain instead")
    parser.add_argument("--vision-pretraining-steps", type=int, default=0,
                        help="with --vision-block-gain: pretrain that vision tower on this many streams first")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        if args.vision_block_gain is not None:
            args.model, args.mmproj = untrained_pair(pathlib.Path(scratch), args.vision_block_gain,
                                                     args.vision_pretraining_steps)
        return report(args)


def untrained_pair(scratch: pathlib.Path, vision_block_gain: float, vision_pretraining_steps: int) -> tuple:
    """The training script's initial thinker (seed 0) with this vision block gain, its vision tower
    pretrained or not, its towers standardised, as a text GGUF and its projector."""
    hf_dir = scratch / "init"
    hf_dir.mkdir()
    recipe.build_initial_model(hf_dir, scratch / "standardise", 0, recipe.MODALITY_MARKER, vision_block_gain,
                               vision_pretraining_steps)
    text, mmproj = scratch / "text.gguf", scratch / "mmproj.gguf"
    recipe.convert_checkpoint(hf_dir, text, "f32", mmproj=mmproj, mmproj_outtype="f32", progress=False)
    return text, mmproj


def report(args: argparse.Namespace) -> int:
    with om.Model(args.model, mmproj=args.mmproj) as model:
        data = collect(model, args.streams, args.seconds)
    split = int(0.7 * len(data))
    parts = {"train": data[:split], "test": data[split:]}
    slots = {k: [s for stream in v for s in stream[0]] for k, v in parts.items()}
    audio = {k: [a for stream in v for a in stream[1]] for k, v in parts.items()}
    print(f"{args.streams} streams of {args.seconds:g} s ({split} to fit, {len(data) - split} to score)\n")
    print("| probe | label | test accuracy | prior |\n|---|---|---|---|")
    for name, label in (("colour", 2), ("shape", 1)):
        for kind, features, hidden in (("linear, mean of the slot's tokens", lambda t: t.mean(0), 0),
                                       ("MLP, the slot's tokens side by side", lambda t: t.reshape(-1), 256)):
            acc, prior = probe([features(s[0]) for s in slots["train"]], [s[label] for s in slots["train"]],
                               [features(s[0]) for s in slots["test"]], [s[label] for s in slots["test"]], hidden)
            print(f"| {kind} | slot {name} | {acc:.0%} | {prior:.0%} |")
    acc, prior = probe([a[0] for a in audio["train"]], [a[1] for a in audio["train"]],
                       [a[0] for a in audio["test"]], [a[1] for a in audio["test"]])
    print(f"| linear, mean of a second's audio tokens | sound symbol | {acc:.0%} | {prior:.0%} |")
    print("\n| embeddings | mean norm | mean cosine between two |\n|---|---|---|")
    print(geometry("visual tokens", np.concatenate([d[2] for d in data])))
    print(geometry("audio tokens", np.concatenate([d[3] for d in data])))
    print(geometry("text model's token embeddings", token_embeddings(args.model)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
