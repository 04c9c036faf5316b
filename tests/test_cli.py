"""The `omnimem` console script end to end, in subprocesses as a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

import omnimem_cpp as om


def omnimem(*args, cwd):
    exe = shutil.which("omnimem")
    if exe is None:
        pytest.skip("the omnimem console script is not installed")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_demo_streams_a_video_and_answers(tmp_path):
    proc = omnimem("demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "s of video with sound ->" in proc.stdout and "questions are rolled back" in proc.stdout


def test_info_and_run_with_json(tmp_path, tiny_gguf):
    proc = omnimem("info", tiny_gguf("base", "f16"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["architecture"] == "qwen2vl"

    proc = omnimem("run", tiny_gguf("base", "f16"), "--text", "Ann has three cats.", "--ask", "How many?",
                   "--ask", "Whose?", "--max-tokens", "4", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [a["question"] for a in out["answers"]] == ["How many?", "Whose?"]
    with om.Model(tiny_gguf("base", "f16")) as model:
        assert out["tokens_fed"] == len(model.tokenize("Ann has three cats."))


@pytest.mark.parametrize("args, message", [
    (("info", "missing.gguf"), "does not exist"),
    (("run", "missing.gguf", "--ask", "x"), "no such file"),
    (("convert", "no-such-dir", "-o", "x.gguf"), "no-such-dir"),
])
def test_bad_input_exits_2_with_a_message(tmp_path, args, message):
    proc = omnimem(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr.lower()
