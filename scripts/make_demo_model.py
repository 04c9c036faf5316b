"""Regenerates omnimem_cpp/data/demo-text.gguf and demo-mmproj.gguf, the small model `omnimem demo` runs
without a download.

It is a tiny random-weight Qwen2.5-Omni thinker (tests/tiny_models.py, config "base", seed 0) converted
with the project's own converter, so it exercises the real path: tokenizer, GGUF, native decoder.
Needs the test extra (torch, transformers): pip install '.[test]'

    python scripts/make_demo_model.py
"""

import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import tiny_models  # noqa: E402

from omnimem_cpp.convert import convert_checkpoint  # noqa: E402


def main() -> None:
    data = ROOT / "omnimem_cpp" / "data"
    text, mmproj = data / "demo-text.gguf", data / "demo-mmproj.gguf"
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = tiny_models.make_thinker(pathlib.Path(tmp) / "demo", "base", seed=0)
        convert_checkpoint(hf_dir, text, "f16", mmproj=mmproj, progress=False)
    for path in (text, mmproj):
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
