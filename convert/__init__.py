"""Hugging Face checkpoint -> GGUF conversion (`omnimem convert`).

    from omnimem_cpp.convert import convert_checkpoint
    convert_checkpoint("Qwen2.5-Omni-7B", "qwen2.5-omni-7b-q8_0.gguf", "q8_0")

The text decoder is written the way llama.cpp's own converter writes it (arch `qwen2vl`), so llama.cpp loads
the file too. One module per model family; see registry.py.
"""

from __future__ import annotations

import pathlib

from .checkpoint import Checkpoint
from .quant import OUTTYPES, check_outtype
from .registry import SUPPORTED_ARCHITECTURES, family_for
from .writer import write_gguf

__all__ = ["OUTTYPES", "SUPPORTED_ARCHITECTURES", "convert_checkpoint"]


def convert_checkpoint(hf_dir, outfile, outtype: str = "f16", *, progress: bool = True) -> pathlib.Path:
    """Convert the HF checkpoint in `hf_dir` to a text-model GGUF at `outfile`; returns its path.

    outtype is one of OUTTYPES. Raises ConversionError (before writing anything) when the checkpoint cannot
    be converted.
    """
    outtype = check_outtype(outtype)
    ckpt = Checkpoint(hf_dir)
    plan = family_for(ckpt.config).plan_text(ckpt)
    return write_gguf(plan, pathlib.Path(outfile), outtype, progress=progress)
