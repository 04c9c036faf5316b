"""Where the AV-Recall model looks when asked whether an object appeared.

For "Did the ring appear?" the model has to find the ring's tokens when there are any and tell that apart
from finding none. This script feeds training-like streams (12 s, 24 visual events a minute, seeds no run
trains on) to a trained checkpoint with transformers, asks every `object_appeared` question, and reads each
layer's attention from the position that predicts the answer. Per layer it prints the largest share any
one head gives to the rows that show the asked object (the tokens of its slot while it is on screen), to
the rows that show other objects, to all video rows, and to the two opening tokens, a place a model could
attend to when nothing matches; separately for questions whose answer is "yes" and "no".

    python scripts/object_attention.py --checkpoint WORK/trained-...-PHASES --mmproj DIR/avrecall-mmproj.gguf

``--checkpoint`` is a phase folder of the training script's ``--work-dir`` (a transformers checkpoint);
``--mmproj`` the projector written with it, whose encoders make the video rows, as in training.
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
from omnimem_cpp.avrecall import AVRecallStream, all_questions  # noqa: E402
from omnimem_cpp.avrecall.layout import StreamLayout, first_second  # noqa: E402

SEED_BASE = 7_000_000           # neither a benchmark, training, probe nor pretraining seed
N_OPENING = 2                   # <|vision_bos|><|audio_bos|> before the media rows


def object_rows(av: AVRecallStream, layout: dict, obj: str) -> np.ndarray:
    """Which media rows of the layout show ``obj``: its slot's tokens in every frame pair it is on screen."""
    cover = av.slot_cover()
    shows = np.zeros(len(layout["embeddings"]), bool)
    for first, _, (t, gh, gw) in layout["videos"]:
        cells = (gh // 2) * (gw // 2)
        second = first_second(layout, first)
        for g in range(t):
            state = av.timeline.state_at(second + g)
            if obj in state:
                in_slot = np.flatnonzero(cover[state[obj][1]].reshape(-1) >= 0.5)
                shows[first + g * cells + in_slot] = True
    return shows


def attention_shares(thinker, seq: "recipe.Sequence", layout: dict, question: str, *row_sets: np.ndarray) -> np.ndarray:
    """[layers, len(row_sets) + 2]: per layer, the largest share one head of the answer position gives to
    each set of media rows, to the video rows and to the opening tokens."""
    with torch.no_grad():
        inputs, position_ids = seq.asked(thinker.model.get_input_embeddings(), layout, question)
        out = thinker.model(inputs_embeds=inputs, position_ids=position_ids, output_attentions=True)
    groups = [np.concatenate([np.zeros(N_OPENING, bool), rows]) for rows in (*row_sets, layout["is_video"])]
    groups.append(np.arange(len(groups[0])) < N_OPENING)
    shares = []
    for layer in out.attentions:                            # [1, heads, query, key]
        last = layer[0, :, -1, :len(groups[0])].numpy()
        shares.append([last[:, g].sum(1).max() for g in groups])
    return np.array(shares)


def measure(checkpoint: pathlib.Path, mmproj: pathlib.Path, n_streams: int) -> dict:
    """{answer is yes: [questions, layers, 4]} over ``n_streams`` streams."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    special = {t: tok.convert_tokens_to_ids(t) for t, _ in recipe.tiny_models.ADDED_TOKENS}
    thinker = recipe.tiny_models.load_thinker(checkpoint)
    thinker.model.config._attn_implementation = "eager"     # the fused kernels return no attention weights
    seq = recipe.Sequence(tok, special)
    found = {True: [], False: []}
    # the runtime's text model is not used, only the projector's encoders that make the media rows
    with tempfile.TemporaryDirectory() as scratch:
        scratch_text = pathlib.Path(scratch) / "text.gguf"
        recipe.convert_checkpoint(checkpoint, scratch_text, "f32", progress=False)
        with om.Model(scratch_text, mmproj=mmproj) as model:
            for k in range(n_streams):
                cfg = recipe.Phase(1, 12, 12, 24.0).stream_config(SEED_BASE + k)
                av = AVRecallStream(cfg)
                with model.stream() as s:
                    layout = StreamLayout(s).encode(av)
                rows = {o: object_rows(av, layout, o) for o in cfg.objects}
                for q in all_questions(cfg, av.timeline):
                    if q.kind == "object_appeared":
                        obj = q.params["object"]
                        others = np.logical_or.reduce([r for o, r in rows.items() if o != obj])
                        shares = attention_shares(thinker, seq, layout, q.text, rows[obj], others)
                        found[q.answer == "yes"].append(shares)
    return {k: np.array(v) for k, v in found.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=pathlib.Path, required=True)
    parser.add_argument("--mmproj", type=pathlib.Path, required=True)
    parser.add_argument("--streams", type=int, default=6)
    args = parser.parse_args(argv)
    if not (args.checkpoint / "config.json").exists():
        parser.error(f"{args.checkpoint} is not a transformers checkpoint (no config.json): give a phase folder "
                     "of the training script's --work-dir")
    found = measure(args.checkpoint, args.mmproj, args.streams)
    print("| answer | questions | layer | the object's rows | other objects' rows | video rows | opening tokens |\n"
          "|---|---|---|---|---|---|---|")
    for yes, shares in found.items():
        for layer, means in enumerate(shares.mean(0) if len(shares) else []):
            print(f"| {'yes' if yes else 'no'} | {len(shares)} | {layer} | " + " | ".join(f"{m:.1%}" for m in means) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
