"""The training script of the shipped AV-Recall model, run for two steps: the layout it trains on is the one
the runtime feeds (same logits), its streams are new at every step, and it writes a GGUF pair that loads."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trainer():
    sys.path.insert(0, str(ROOT / "scripts"))
    import train_avrecall_model

    return train_avrecall_model


def test_two_steps_write_a_pair_that_loads(tmp_path, trainer):
    import omnimem_cpp as om

    report = tmp_path / "report.json"
    args = ["--phase", "2:12-12", "--work-dir", str(tmp_path / "work"), "--out-dir", str(tmp_path),
            "--report", str(report), "--threads", "2"]
    assert trainer.main(args) == 0
    written = json.loads(report.read_text())
    # transformers on the reproduced layout against the runtime streaming the same clip (F32 memory)
    assert written["layout_check_rel_error"] < 1e-4
    assert len(written["phase1"]["curve"]) == 1 and written["phase1"]["curve"][0]["step"] == 2
    with om.Model(tmp_path / "avrecall-text.gguf", mmproj=tmp_path / "avrecall-mmproj.gguf") as model:
        assert model.info.n_layer == trainer.TEXT["num_hidden_layers"]


def test_training_streams_differ_every_step_and_repeat_with_the_seed(trainer):
    phase = trainer.Phase(10, 12, 20)
    configs = [trainer.train_stream_config(0, phase, step) for step in range(10)]
    assert len({c.seed for c in configs}) == 10 and all(12 <= c.seconds <= 20 for c in configs)
    assert configs == [trainer.train_stream_config(0, phase, step) for step in range(10)]
    assert trainer.train_stream_config(1, phase, 0).seed != configs[0].seed
    assert min(c.seed for c in configs) >= trainer.TRAIN_SEED_BASE     # never a benchmark seed
