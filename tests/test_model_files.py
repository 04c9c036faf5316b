"""Bad model files give a Python exception with a message that names the problem — never a crash.

Every broken file is loaded in one child process, so an abort or a segfault would fail the test instead of
taking pytest down.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from gguf_edit import rewrite_gguf

import omnimem_cpp as om

_LOADER = """
import json, sys
import omnimem_cpp as om
results = {}
for path in sys.argv[1:]:
    try:
        om.Model(path).close()
        results[path] = ["ok", ""]
    except om.OmnimemError as e:
        results[path] = [type(e).__name__, str(e)]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def broken_files(tiny_gguf, tmp_path_factory):
    good = tiny_gguf("base", "f32")
    d = tmp_path_factory.mktemp("broken")
    data = good.read_bytes()
    (d / "truncated.gguf").write_bytes(data[: len(data) * 2 // 3])
    (d / "header_only.gguf").write_bytes(data[:40])
    (d / "wrong_magic.gguf").write_bytes(b"GGML" + data[4:])
    (d / "text.gguf").write_text("this is not a model\n")
    (d / "empty.gguf").write_bytes(b"")
    files = {
        "truncated": d / "truncated.gguf",
        "header_only": d / "header_only.gguf",
        "wrong_magic": d / "wrong_magic.gguf",
        "text": d / "text.gguf",
        "empty": d / "empty.gguf",
        "other_arch": rewrite_gguf(good, d / "llama.gguf", arch="llama"),
        "mmproj": rewrite_gguf(good, d / "clip.gguf", arch="clip"),
        "missing_tensor": rewrite_gguf(good, d / "missing.gguf", drop_tensor="blk.1.ffn_up.weight"),
        "wrong_shape": rewrite_gguf(good, d / "shape.gguf", reshape="blk.0.attn_k.bias"),
        "missing_key": rewrite_gguf(good, d / "nokey.gguf", drop_key="qwen2vl.block_count"),
        "missing_path": d / "does-not-exist.gguf",
        "directory": d,
        "intact": good,
    }
    # cwd outside the source tree: the child must import the installed package
    proc = subprocess.run([sys.executable, "-c", _LOADER, *map(str, files.values())], capture_output=True,
                          text=True, timeout=300, cwd=d)
    assert proc.returncode == 0, f"the loader process died: {proc.returncode}\n{proc.stderr[-2000:]}"
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return {name: results[str(path)] for name, path in files.items()}


@pytest.mark.parametrize("case, error, message", [
    ("truncated", "ModelFileError", r"truncated"),
    ("header_only", "ModelFileError", r"corrupt or truncated"),
    ("wrong_magic", "ModelFileError", r"not a GGUF file"),
    ("text", "ModelFileError", r"not a GGUF file"),
    ("empty", "ModelFileError", r"not a GGUF file"),
    ("other_arch", "UnsupportedModelError", r"architecture 'llama'.*qwen2vl"),
    ("mmproj", "UnsupportedModelError", r"projector"),
    ("missing_tensor", "ModelMismatchError", r"no tensor 'blk\.1\.ffn_up\.weight'"),
    ("wrong_shape", "ModelMismatchError", r"'blk\.0\.attn_k\.bias' has shape \[31\].*\[32\]"),
    ("missing_key", "ModelMismatchError", r"qwen2vl\.block_count"),
    ("missing_path", "ModelNotFoundError", r"no such file"),
    ("directory", "ModelNotFoundError", r"directory"),
])
def test_bad_file_raises_a_clear_error(broken_files, case, error, message):
    import re

    kind, text = broken_files[case]
    assert kind == error, text
    assert re.search(message, text), text


def test_intact_file_loads_in_the_same_process(broken_files):
    assert broken_files["intact"] == ["ok", ""]


def test_errors_are_python_exception_classes():
    assert issubclass(om.ModelNotFoundError, FileNotFoundError)
    assert issubclass(om.ModelFileError, ValueError)
    assert issubclass(om.ContextFullError, om.OmnimemError)


def test_token_embeddings_read_the_text_model_and_refuse_a_projector():
    """`gguf_info.token_embeddings` gives one row per vocabulary entry; a projector, which has no token table,
    gets an error that says which file to give."""
    from omnimem_cpp.avrecall import MODEL, PROJECTOR
    from omnimem_cpp.gguf_info import token_embeddings

    table = token_embeddings(MODEL)
    with om.Model(MODEL) as model:
        assert table.shape == (model.info.n_vocab, model.info.n_embd)
    with pytest.raises(om.ModelFileError, match="no token embedding table; give the text model"):
        token_embeddings(PROJECTOR)
