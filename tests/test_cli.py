"""The `omnimem` console script end to end, in subprocesses as a user runs it."""

from __future__ import annotations

import json
import re
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
    from omnimem_cpp.demo import DEMO_QUESTIONS

    proc = omnimem("demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with om.media.open(tmp_path / "avrecall-demo.mp4") as clip:     # the clip it wrote, for the user to watch
        assert clip.duration == pytest.approx(60, abs=0.5)
    lines = proc.stdout.splitlines()
    assert sum(line.endswith((" ok", " wrong")) for line in lines) == DEMO_QUESTIONS
    assert any("KiB of K/V" in line for line in lines) and "questions were rolled back" in proc.stdout
    # the bounded memory's answers beside the full memory's, each counted in the summary
    assert re.search(rf"\d of {DEMO_QUESTIONS} right with \d+ rows per layer, \d with the full memory", proc.stdout)


@pytest.mark.parametrize("command", [["demo"], ["bench", "avrecall"], ["run", "model.gguf"]])
def test_thread_counts_below_one_are_refused_before_any_work(tmp_path, command):
    for threads, why in (("0", "at least 1"), ("two", "a whole number")):
        proc = omnimem(*command, "--threads", threads, cwd=tmp_path)
        assert proc.returncode == 2 and f"--threads: must be {why}" in proc.stderr
    assert not list(tmp_path.iterdir())     # the demo wrote no clip


def test_bench_avrecall_json_and_bad_options(tmp_path):
    proc = omnimem("bench", "avrecall", "--minutes", "0.25", "--budgets", "32", "--policies", "omnimem",
                   "--seeds", "1", "--questions", "4", "--threads", "1", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["results"]
    keys = {"policy", "budget", "minutes", "question_type", "accuracy", "kv_bytes"}
    assert rows and all(keys <= set(r) for r in rows)
    assert {(r["policy"], r["budget"]) for r in rows if r["question_type"] == "all"} == {("full", None),
                                                                                         ("omnimem", 32)}
    proc = omnimem("bench", "avrecall", "--budgets", "lots", cwd=tmp_path)
    assert proc.returncode == 2 and "comma-separated numbers" in proc.stderr


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
    (("bench", "avrecall", "--policies", "uniform,omnimem:lam=x"), "lam in the policy"),
    (("bench", "avrecall", "--quick", "--minutes", "0"), "lengths must be positive"),
    (("bench", "avrecall", "--quick", "--seeds", "0"), "at least one stream"),
])
def test_bad_input_exits_2_with_a_message(tmp_path, args, message):
    proc = omnimem(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr.lower()


def test_run_streams_a_video_under_a_budget_saves_and_resumes(tmp_path):
    from omnimem_cpp.demo import DEMO_MODEL, DEMO_PROJECTOR, write_demo_clip

    clip = write_demo_clip(tmp_path / "clip.mp4", seconds=6)
    common = [DEMO_MODEL, "--mmproj", DEMO_PROJECTOR, "--threads", "1", "--max-tokens", "2", "--json"]
    proc = omnimem("run", *common, "--input", clip, "--policy", "omnimem", "--budget", "64", "--neighbours",
                   "frame", "--ask", "What?", "--save", tmp_path / "s.oms", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first = json.loads(proc.stdout)
    assert first["policy"] == "omnimem" and first["compactions"] > 0 and len(first["answers"]) == 1
    n_layer = om.Model(DEMO_MODEL).info.n_layer
    assert first["rows"]["visual"] + first["rows"]["audio"] <= 64 * n_layer
    proc = omnimem("run", *common, "--resume", tmp_path / "s.oms", "--input", clip, "--ask", "And?", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    second = json.loads(proc.stdout)
    assert second["policy"] == "omnimem" and second["tokens_fed"] > first["tokens_fed"]
    proc = omnimem("run", *common, "--policy", "omnimem", "--budget", "lots", cwd=tmp_path)
    assert proc.returncode == 2 and "cannot read the budget" in proc.stderr


def test_calibrate_writes_a_table_that_run_takes(tmp_path):
    from omnimem_cpp.demo import DEMO_MODEL, DEMO_PROJECTOR, write_demo_clip

    clip = write_demo_clip(tmp_path / "clip.mp4", seconds=6)
    proc = omnimem("calibrate", DEMO_MODEL, clip, "--mmproj", DEMO_PROJECTOR, "--budget", "96", "-o",
                   tmp_path / "budget.json", "--threads", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = json.loads((tmp_path / "budget.json").read_text())
    n_layer = om.Model(DEMO_MODEL).info.n_layer
    assert len(table["layers"]) == n_layer
    assert abs(sum(a + v for a, v in table["layers"]) - 96 * n_layer) <= n_layer   # rounding per layer
    proc = omnimem("run", DEMO_MODEL, "--mmproj", DEMO_PROJECTOR, "--input", clip, "--policy", "omnimem",
                   "--budget", tmp_path / "budget.json", "--json", "--threads", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["compactions"] > 0


def test_interactive_run_answers_while_ingesting(tmp_path):
    from omnimem_cpp.demo import DEMO_MODEL, DEMO_PROJECTOR, write_demo_clip

    clip = write_demo_clip(tmp_path / "clip.mp4", seconds=6)
    exe = shutil.which("omnimem")
    if exe is None:
        pytest.skip("the omnimem console script is not installed")
    proc = subprocess.run([exe, "run", str(DEMO_MODEL), "--mmproj", str(DEMO_PROJECTOR), "--input", str(clip),
                           "--policy", "omnimem", "--budget", "64", "--max-tokens", "2", "--threads", "1", "-i"],
                          input="What is there?\nAnd now?\n\n", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("A: ") == 2 and proc.stdout.count("tokens ingested]") == 2


def test_a_report_names_the_command_as_a_shell_reads_it():
    """An empty argument and one with spaces survive a paste back into a shell."""
    import shlex

    from omnimem_cpp.cli import report_command

    argv = ["/venv/bin/omnimem", "bench", "avrecall", "--policies", "", "--report", "my runs/"]
    command = report_command(argv)
    assert command == "omnimem bench avrecall --policies '' --report 'my runs/'"
    assert shlex.split(command)[3:] == argv[3:]
    assert report_command(["python", "-m", "pytest"]) == "omnimem bench avrecall"
