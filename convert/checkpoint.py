"""Lazy access to a Hugging Face checkpoint directory: config.json plus safetensors, tensor by tensor.

The safetensors headers are parsed here and tensor data is memory-mapped, so a tensor is read from disk only
when it is converted and the process never holds the whole model. We read the format ourselves rather than
through safetensors' numpy loader because numpy has no bfloat16, the dtype most released checkpoints use.
"""

from __future__ import annotations

import json
import pathlib
import struct
from dataclasses import dataclass

import numpy as np

from ..errors import ConversionError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# safetensors dtype name -> numpy dtype of the stored bytes; BF16 is read as uint16 and widened by hand.
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
           "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


@dataclass(frozen=True)
class TensorRef:
    """Where one tensor lives: its file, dtype, shape (numpy order) and byte range within the data section."""

    file: pathlib.Path
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def _read_header(path: pathlib.Path) -> tuple[dict, int]:
    """Return (tensor entries, offset of the data section) of one .safetensors file."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except (OSError, struct.error, ValueError) as e:
        raise ConversionError(f"cannot read safetensors file {path}: {e}; re-download or re-save it") from None
    header.pop("__metadata__", None)
    return header, 8 + n


class Checkpoint:
    """An HF checkpoint directory: `config` (the parsed config.json) and its tensors, read on demand."""

    def __init__(self, hf_dir) -> None:
        self.dir = pathlib.Path(hf_dir)
        if not self.dir.is_dir():
            raise ConversionError(f"checkpoint directory {self.dir} does not exist; pass the folder holding config.json")
        config_path = self.dir / "config.json"
        if not config_path.is_file():
            raise ConversionError(f"{self.dir} has no config.json; pass the folder of a Hugging Face checkpoint")
        try:
            self.config = json.loads(config_path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ConversionError(f"{config_path} is not valid JSON ({e}); re-download it") from None
        self._refs = self._index()
        self._maps: dict[pathlib.Path, np.memmap] = {}

    def _files(self) -> list[pathlib.Path]:
        index = self.dir / INDEX_FILE
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            return [self.dir / name for name in sorted(set(weight_map.values()))]
        if (self.dir / SINGLE_FILE).is_file():
            return [self.dir / SINGLE_FILE]
        found = sorted(self.dir.glob("*.safetensors"))
        if found:
            return found
        raise ConversionError(f"{self.dir} holds no .safetensors weights; re-save a .bin (PyTorch pickle) checkpoint "
                              "with save_pretrained(..., safe_serialization=True) first")

    def _index(self) -> dict[str, TensorRef]:
        refs = {}
        for path in self._files():
            if not path.is_file():
                raise ConversionError(f"shard {path.name} named in {INDEX_FILE} is missing; download it again")
            header, base = _read_header(path)
            for name, entry in header.items():
                begin, end = entry["data_offsets"]
                refs[name] = TensorRef(path, entry["dtype"], tuple(entry["shape"]), base + begin, base + end)
        return refs

    def names(self) -> list[str]:
        return list(self._refs)

    def ref(self, name: str) -> TensorRef | None:
        return self._refs.get(name)

    def load(self, name: str) -> np.ndarray:
        """The tensor `name` as a float32 array (a copy; the file stays mapped, not read whole)."""
        ref = self._refs[name]
        if ref.dtype not in _DTYPES:
            raise ConversionError(f"tensor {name} has dtype {ref.dtype}, which the converter cannot read")
        mm = self._maps.get(ref.file)
        if mm is None:
            mm = self._maps[ref.file] = np.memmap(ref.file, dtype=np.uint8, mode="r")
        raw = mm[ref.begin:ref.end].view(_DTYPES[ref.dtype]).reshape(ref.shape)
        if ref.dtype == "BF16":
            # bfloat16 is the top half of a float32
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32)


class SubModel:
    """The tensors of a checkpoint below one name prefix (e.g. `thinker.`), addressed without that prefix."""

    def __init__(self, ckpt: Checkpoint, prefix: str = "") -> None:
        self.ckpt = ckpt
        self.prefix = prefix

    def has(self, name: str) -> bool:
        return self.ckpt.ref(self.prefix + name) is not None

    def shape(self, name: str) -> tuple[int, ...]:
        ref = self.ckpt.ref(self.prefix + name)
        if ref is None:
            raise ConversionError(f"checkpoint {self.ckpt.dir} lacks tensor {self.prefix + name}; "
                                  "it is incomplete or not the architecture its config.json claims")
        return ref.shape

    def expect(self, name: str, shape: tuple[int, ...]) -> None:
        """Raise ConversionError unless tensor `name` exists with this (numpy-order) shape."""
        got = self.shape(name)
        if got != tuple(shape):
            raise ConversionError(f"tensor {self.prefix + name} has shape {list(got)}, expected {list(shape)} "
                                  "from config.json; the weights and config do not match")

    def load(self, name: str) -> np.ndarray:
        return self.ckpt.load(self.prefix + name)
