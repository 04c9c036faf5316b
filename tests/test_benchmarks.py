"""The speed benchmark's pieces that run in seconds: the bandwidth scan, llama.cpp's uncompressed context
beside a bounded stream, the straight-line fit, omnimem.cpp's decode profile, and `omnimem bench speed` end to
end on its cheap parts."""

from __future__ import annotations

import json

import pytest

import omnimem_cpp as om
from omnimem_cpp.benchmarks import kernels_ab, memory_scaling, speed, text_speed
from omnimem_cpp.benchmarks.bandwidth import read_bandwidth_gbs
from omnimem_cpp.demo import DEMO_MODEL

from test_cli import omnimem


def test_bandwidth_is_positive_and_checks_its_arguments():
    assert read_bandwidth_gbs(1, mib=16, repeats=1) > 0
    with pytest.raises(ValueError):
        read_bandwidth_gbs(0)


def test_llama_cpp_context_holds_every_token_at_the_model_dims():
    """llama.cpp's K/V for a stream without compression: F16 K and V of every layer for every token, as the
    model's own header gives its dimensions."""
    cfg = {"model": str(DEMO_MODEL), "threads": 1, "n_batch": 256, "max_tokens": 4, "repeats": 1, "seed": 0,
           "timeout_s": 300, "stream_tokens": {"0.1": 300, "0.2": 700, "9": 10**6}, "llama_max_tokens": 1000}
    result = memory_scaling.run_child("llama.cpp", cfg)
    with om.Model(DEMO_MODEL) as model:
        info = model.info
    per_token = info.n_layer * 2 * info.n_head_kv * info.n_embd_head * 2
    assert result["setup"]["kv_bytes_per_token"] == per_token
    assert [c["n_tokens"] for c in result["checkpoints"]] == [300, 700]
    assert all(c["kv_bytes"] == c["n_tokens"] * per_token and c["decode_steps"]["decode_ms_per_token"] > 0
               for c in result["checkpoints"])
    assert result["stopped"]["n_tokens"] == 10**6 and "not run" in result["stopped"]["message"]


def test_llama_answer_time_is_measured_or_fitted_on_a_line():
    llama = {"checkpoints": [{"n_tokens": 1000, "decode_steps": {"decode_ms_per_token": 2.0}},
                             {"n_tokens": 3000, "decode_steps": {"decode_ms_per_token": 3.0}}]}
    assert speed.llama_answer_ms(llama, 3000) == (3.0, "measured")
    fitted, how = speed.llama_answer_ms(llama, 11000)
    assert fitted == pytest.approx(7.0) and "fitted" in how
    assert speed.llama_answer_ms({"checkpoints": llama["checkpoints"][:1]}, 5000) == (None, "not measured")


def test_text_rows_compare_with_the_best_llama_mode_that_did_not_crash():
    def run(engine, label, decode, prefill):
        def cell(v):
            return {"median": v} if isinstance(v, float) else {"status": v}
        return {"engine": engine, "label": label, "decode": cell(decode), "prefill": cell(prefill)}

    ours = run("omnimem.cpp", "ours", 6.0, 33.0)
    ours["decode_profile"] = [{"op": "MUL_MAT", "nodes": 8, "seconds": 0.8, "bytes_read": 12_000_000_000},
                              {"op": "ADD", "nodes": 8, "seconds": 0.2, "bytes_read": 1000}]
    ours["prefill_profile"] = [{"op": "MUL_MAT", "nodes": 8, "seconds": 9.0, "bytes_read": 10, "flops": 1.8e12},
                               {"op": "SOFT_MAX", "nodes": 8, "seconds": 1.0, "bytes_read": 10}]
    text = {"decode_weight_bytes": {"q8_0": 3e9},
            "results": {"q8_0": [run("llama.cpp", "default (AMX)", 8.0, "crash (SIGSEGV)"),
                                 run("llama.cpp", "plain", 4.0, 30.0), ours]}}
    rows = {r[0]: r for r in speed.text_rows(text, bandwidth=30.0)}
    assert rows["Q8_0 decode (tok/s)"][2:4] == ["8.00 (default (AMX))", "0.75×"]
    assert rows["Q8_0 decode (tok/s)"][5] == "**no**"
    assert rows["Q8_0 prefill (tok/s)"][2:4] == ["30.00 (plain)", "1.10×"]
    assert rows["Q8_0 prefill (tok/s)"][5] == "**no**"      # ahead of llama.cpp, short of 100 tok/s
    bandwidth = rows["Q8_0 decode: weights read per second ÷ read-only bandwidth"]
    assert bandwidth[1:3] == ["0.60", "0.80"]                # 6 and 8 tok/s × 3 GB ÷ 30 GB/s
    profiled = next(r for r in rows.values() if r[0].startswith("Q8_0 decode, every node timed alone"))
    assert profiled[1] == "80 %; 0.50"                         # 0.8 of 1.0 s; 12 GB in 0.8 s ÷ 30 GB/s
    profiled = next(r for r in rows.values() if r[0].startswith("Q8_0 prefill, every node timed alone"))
    assert profiled[1] == "90 %; 200 GFLOP/s"                  # 9 of 10 s; 1.8 TFLOP in 9 s


def test_decode_child_profiles_omnimem_decode_steps(tiny_gguf):
    cfg = {**text_speed.text_config(threads=1, prompt=16, decode=4, repeats=1, seed=0), "n_vocab_normal": 100}
    found = text_speed.run_child("omnimem.cpp", "repack", tiny_gguf("base", "f32"), cfg)
    assert found["decode"]["median"] > 0 and found["prefill"]["median"] > 0
    decode = {op["op"]: op for op in found["decode_profile"]}
    assert decode["MUL_MAT"]["nodes"] == 4 * (7 * 2 + 1)       # 4 steps × (7 matrices × 2 layers + the head)
    prefill = {op["op"]: op for op in found["prefill_profile"]}
    assert prefill["MUL_MAT"]["nodes"] == 7 * 2 + 1            # one batch; the head for its last token only
    table = text_speed.profile_tables({"q8_0": [{"engine": "omnimem.cpp", **found}]}, cfg)
    assert "Q8_0 decode, omnimem.cpp, per operation (4 single-token steps" in table and "| MUL_MAT | 15 |" in table
    assert "Q8_0 prefill, omnimem.cpp, per operation (one 16-token batch" in table


def test_bench_speed_cheap_parts_end_to_end(tmp_path):
    out = tmp_path / "speed.json"
    proc = omnimem("bench", "speed", "--parts", "bandwidth,stream,scoring", "--minutes", "0.1,0.3", "--budget", "64",
                   "--threads", "1", "--repeats", "1", "--json", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(out.read_text())["results"]
    assert found["bandwidth_gbs"] > 0
    ours, llama = found["stream"]["omnimem"]["checkpoints"], found["stream"]["llama.cpp"]["checkpoints"]
    assert [c["n_tokens"] for c in ours] == [c["n_tokens"] for c in llama]
    # bounded: the stream's K/V stays at the budget while llama.cpp's grows with every token
    assert ours[0]["kv_bytes"] == ours[1]["kv_bytes"] < llama[0]["kv_bytes"] < llama[1]["kv_bytes"]
    assert "answer token (ms) after 0.3 min" in proc.stdout and "read-only memory bandwidth" in proc.stdout
    # at its budget the memory is compacted after every chunk, and the profile saw the attention received
    scoring = found["scoring"]
    timed = scoring["runs"][0]
    assert timed["compactions"] == 15 and timed["attention_received_ms"] > 0
    assert 0 < scoring["compaction_share"] < scoring["scoring_share"] < 1
    assert "scoring ÷ ingest at omnimem@64" in proc.stdout
    proc = omnimem("bench", "speed", "--parts", "text", "--types", "q5_9", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown weight types" in proc.stderr


def test_kernels_ab_alternates_both_engines_on_one_file(tiny_gguf):
    found = kernels_ab.measure(tiny_gguf("base", "q8_0"), rounds=2, decode=3, prompt=8, threads=1)
    for name in ("ours", "ggml"):
        assert len(found[name]["decode"]) == len(found[name]["prefill"]) == 2
        assert min(found[name]["decode"] + found[name]["prefill"]) > 0
    assert found["ggml"]["weights_packed_bytes"] == 0


def test_kernels_ab_table_divides_the_medians():
    results = {"q8_0": {"ours": {"decode": [8.0, 6.0, 7.0], "prefill": [100.0, 90.0, 95.0], "weights_packed_bytes": 3e9},
                        "ggml": {"decode": [7.0, 7.0, 7.0], "prefill": [20.0, 19.0, 18.0], "weights_packed_bytes": 0}}}
    rows = kernels_ab.table(results).splitlines()
    assert rows[2] == "| Q8_0 | decode (tok/s) | 7.00; 8.00 | 7.00; 7.00 | 1.00× |"
    assert rows[3] == "| Q8_0 | prefill (tok/s) | 95.00; 100.00 | 19.00; 20.00 | 5.00× |"
    assert rows[4] == "| Q8_0 | weights in our kernels' layout | 3.00 GB | | |"
