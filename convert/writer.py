"""Writing a GGUF file from a conversion plan, one tensor at a time.

A model family turns a checkpoint into a `Plan` (architecture, metadata, tensor list) and validates it fully
before anything is written; `write_gguf` then streams the tensors so only one is ever held in memory.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from gguf import GGML_QUANT_VERSION, GGUFWriter
from tqdm import tqdm

from . import quant


@dataclass(frozen=True)
class TensorSpec:
    """One output tensor: its GGUF name, numpy-order shape, how to produce its float32 data, and its storage
    role (quant.WEIGHT, KEEP_F32 or CONV), which decides its ggml type."""

    name: str
    shape: tuple[int, ...]
    load: Callable[[], np.ndarray]
    role: str = quant.WEIGHT


@dataclass
class Plan:
    """Everything one GGUF file will hold. `metadata` adds the family's keys to a GGUFWriter."""

    arch: str
    name: str
    metadata: Callable[[GGUFWriter], None]
    tensors: list[TensorSpec] = field(default_factory=list)


def write_gguf(plan: Plan, outfile: pathlib.Path, outtype: str, *, progress: bool = True) -> pathlib.Path:
    """Write `plan` to `outfile` in `outtype`; the file appears only once it is complete."""
    outfile = pathlib.Path(outfile)
    outfile.parent.mkdir(parents=True, exist_ok=True)
    partial = outfile.with_name(outfile.name + ".partial")
    types = [quant.tensor_type(outtype, t.shape, t.role) for t in plan.tensors]

    writer = GGUFWriter(None, plan.arch)
    writer.add_name(plan.name)
    writer.add_file_type(quant.file_type(outtype))
    if quant.is_quantized(outtype):
        writer.add_quantization_version(GGML_QUANT_VERSION)
    plan.metadata(writer)
    for spec, qtype in zip(plan.tensors, types):
        # the element shape goes in now; bytes follow one tensor at a time after the header
        writer.add_tensor_info(spec.name, spec.shape, np.dtype(np.float32), quant.nbytes(spec.shape, qtype), raw_dtype=qtype)
    try:
        writer.write_header_to_file(partial)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        bar = tqdm(zip(plan.tensors, types), total=len(types), desc=f"writing {outfile.name}", unit="tensor",
                   disable=not progress)
        for spec, qtype in bar:
            data = spec.load()
            if data.shape != spec.shape:
                raise AssertionError(f"{spec.name}: produced shape {data.shape}, planned {spec.shape}")
            writer.write_tensor_data(quant.encode(data, qtype))
        writer.close()
        os.replace(partial, outfile)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    return outfile
