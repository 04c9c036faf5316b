"""Hugging Face checkpoint -> GGUF conversion (`omnimem convert`).

    from omnimem_cpp.convert import convert_checkpoint, convert_projector
    convert_checkpoint("Qwen2.5-Omni-7B", "qwen2.5-omni-7b-q8_0.gguf", "q8_0", mmproj="mmproj-7b-q8_0.gguf")
    convert_projector("Qwen2.5-Omni-7B", "mmproj-7b-f16.gguf", "f16")

The text decoder is written the way llama.cpp's own converter writes it (arch `qwen2vl`), and the vision and
audio encoders as its multimodal projector file (arch `clip`), so llama.cpp and its libmtmd load both files too.
One module per model family; see registry.py.
"""

from __future__ import annotations

import pathlib

from ..errors import ConversionError
from .checkpoint import Checkpoint
from .quant import OUTTYPES, PROJECTOR_OUTTYPES, check_outtype, check_projector_outtype, projector_outtype
from .registry import PROJECTORS, SUPPORTED_ARCHITECTURES, family_for
from .writer import write_gguf

__all__ = ["OUTTYPES", "PROJECTOR_OUTTYPES", "SUPPORTED_ARCHITECTURES", "convert_checkpoint", "convert_projector"]


def _plan_projector(ckpt: Checkpoint):
    return PROJECTORS[family_for(ckpt.config)].plan_projector(ckpt)


def convert_checkpoint(hf_dir, outfile, outtype: str = "f16", *, mmproj=None, mmproj_outtype: str | None = None,
                       progress: bool = True) -> pathlib.Path:
    """Convert the HF checkpoint in `hf_dir` to a text-model GGUF at `outfile`; returns its path.

    outtype is one of OUTTYPES. With `mmproj` (a path) the projector file of the vision and audio encoders is
    written there too, in `mmproj_outtype` (one of PROJECTOR_OUTTYPES; by default outtype, or q8_0 where
    outtype is q4_0). Raises ConversionError (before writing anything) when the checkpoint cannot be converted.
    """
    outtype = check_outtype(outtype)
    if mmproj is None and mmproj_outtype is not None:
        raise ConversionError("a projector output type (--mmproj-outtype) was given without a projector file; "
                              "add --mmproj FILE (mmproj= in Python)")
    ckpt = Checkpoint(hf_dir)
    plan = family_for(ckpt.config).plan_text(ckpt)
    if mmproj is None:
        return write_gguf(plan, pathlib.Path(outfile), outtype, progress=progress)
    mm_outtype = check_projector_outtype(mmproj_outtype or projector_outtype(outtype))
    mm_plan = _plan_projector(ckpt)
    out = write_gguf(plan, pathlib.Path(outfile), outtype, progress=progress)
    write_gguf(mm_plan, pathlib.Path(mmproj), mm_outtype, progress=progress)
    return out


def convert_projector(hf_dir, outfile, outtype: str = "f16", *, progress: bool = True) -> pathlib.Path:
    """Write only the projector file (mmproj) of the HF checkpoint in `hf_dir` to `outfile`; returns its path.

    outtype is one of PROJECTOR_OUTTYPES. Raises ConversionError (before writing anything) when the checkpoint
    has no vision and audio encoders or they do not match its config.
    """
    outtype = check_projector_outtype(outtype)
    ckpt = Checkpoint(hf_dir)
    return write_gguf(_plan_projector(ckpt), pathlib.Path(outfile), outtype, progress=progress)
