"""`omnimem info FILE.gguf`: what a GGUF file holds (architecture, hyperparameters, tokenizer, tensor types)."""

from __future__ import annotations

import os
from collections import Counter

from .errors import ModelFileError

GGUF_MAGIC = b"GGUF"
# Scalar metadata beyond these prefixes is listed under "metadata"; token arrays are only counted.
_TOKENIZER_PREFIX = "tokenizer."


def _plain(value):
    """numpy scalars and arrays as plain Python values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _open(path: str):
    from gguf import GGUFReader

    if not os.path.isfile(path):
        raise ModelFileError(f"model file {path} does not exist; check the path")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"{path} is not a GGUF file (it starts with {magic!r}); convert it with `omnimem convert`")
    try:
        reader = GGUFReader(path)
    except (ValueError, KeyError, IndexError, OverflowError, TypeError):
        raise ModelFileError(f"{path} is a truncated or corrupt GGUF file; download or convert it again") from None
    size = os.path.getsize(path)
    end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)
    if end > size:
        raise ModelFileError(f"{path} is truncated: tensor data ends at byte {end} but the file has {size}; "
                             "download or convert it again")
    return reader


def describe(path) -> dict:
    """A summary of the GGUF file at `path` as plain Python values; raises ModelFileError if unreadable."""
    from gguf import GGMLQuantizationType, GGUFValueType, LlamaFileType

    path = os.fspath(path)
    reader = _open(path)
    fields = {name: field for name, field in reader.fields.items() if not name.startswith("GGUF.")}

    def value(key, default=None):
        field = fields.get(key)
        if field is None:
            return default
        if field.types == [GGUFValueType.FLOAT32]:
            return float(f"{field.contents():.7g}")  # shortest decimal of the stored float32, e.g. 1e-06
        return _plain(field.contents())

    arch = value("general.architecture")
    file_type = value("general.file_type")
    try:
        file_type_name = LlamaFileType(file_type).name if file_type is not None else None
    except ValueError:
        file_type_name = f"unknown ({file_type})"

    arch_prefix = f"{arch}."
    hparams = {k[len(arch_prefix):]: value(k) for k in fields if arch and k.startswith(arch_prefix)}
    tokenizer = None
    if "tokenizer.ggml.model" in fields:
        tokenizer = {
            "model": value("tokenizer.ggml.model"),
            "pre": value("tokenizer.ggml.pre"),
            "n_tokens": len(fields["tokenizer.ggml.tokens"].data) if "tokenizer.ggml.tokens" in fields else 0,
            "n_merges": len(fields["tokenizer.ggml.merges"].data) if "tokenizer.ggml.merges" in fields else 0,
            **{k: value(f"tokenizer.ggml.{k}") for k in ("bos_token_id", "eos_token_id", "padding_token_id")
               if f"tokenizer.ggml.{k}" in fields},
            "chat_template": "tokenizer.chat_template" in fields,
        }
    covered = {"general.architecture", "general.name", "general.file_type"}
    metadata = {k: value(k) for k, f in fields.items()
                if k not in covered and not k.startswith((arch_prefix, _TOKENIZER_PREFIX)) and len(f.data) == 1}

    types = Counter(GGMLQuantizationType(t.tensor_type).name for t in reader.tensors)
    return {
        "path": path,
        "file_size": os.path.getsize(path),
        "gguf_version": _plain(reader.fields["GGUF.version"].contents()),
        "architecture": arch,
        "name": value("general.name"),
        "file_type": file_type,
        "file_type_name": file_type_name,
        "hyperparameters": hparams,
        "tokenizer": tokenizer,
        "metadata": metadata,
        "n_tensors": len(reader.tensors),
        "n_parameters": int(sum(int(t.n_elements) for t in reader.tensors)),
        "tensor_types": dict(sorted(types.items())),
        "tensor_bytes": int(sum(int(t.n_bytes) for t in reader.tensors)),
    }


def token_embeddings(path) -> "np.ndarray":
    """The token embedding table of a text-model GGUF as float32 ``[n_vocab, n_embd]`` (F32 or F16 files): the
    input rows of tokens, for feeding them with explicit positions (:meth:`Stream.feed_embeddings`)."""
    import numpy as np
    from gguf import GGMLQuantizationType

    path = os.fspath(path)
    tensor = next((t for t in _open(path).tensors if t.name == "token_embd.weight"), None)
    if tensor is None:
        raise ModelFileError(f"{path} has no token embedding table; give the text model, not the projector")
    if tensor.tensor_type not in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
        raise ModelFileError(f"{path} stores its token embeddings as {GGMLQuantizationType(tensor.tensor_type).name}; "
                             "this reads F32 and F16 only")
    return np.asarray(tensor.data, dtype=np.float32).reshape(-1, int(tensor.shape[0]))


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def format_info(d: dict) -> str:
    """`describe`'s dict as readable text, one fact per line."""
    lines = [
        f"file:          {d['path']} ({_size(d['file_size'])}, GGUF v{d['gguf_version']})",
        f"architecture:  {d['architecture']}",
        f"name:          {d['name']}",
        f"file type:     {d['file_type_name']}",
        f"tensors:       {d['n_tensors']} ({d['n_parameters']:,} parameters, {_size(d['tensor_bytes'])})",
        "tensor types:  " + ", ".join(f"{t} x{n}" for t, n in d["tensor_types"].items()),
    ]
    if d["hyperparameters"]:
        lines.append("hyperparameters:")
        lines += [f"  {k} = {v}" for k, v in sorted(d["hyperparameters"].items())]
    tok = d["tokenizer"]
    if tok is None:
        lines.append("tokenizer:     none")
    else:
        ids = ", ".join(f"{k.replace('_token_id', '').replace('padding', 'pad')}={tok[k]}"
                        for k in ("bos_token_id", "eos_token_id", "padding_token_id") if k in tok)
        lines.append(f"tokenizer:     {tok['model']} (pre {tok['pre']}), {tok['n_tokens']} tokens, {tok['n_merges']} merges"
                     + (f", {ids}" if ids else "") + (", chat template" if tok["chat_template"] else ""))
    if d["metadata"]:
        lines.append("metadata:")
        lines += [f"  {k} = {v}" for k, v in sorted(d["metadata"].items())]
    return "\n".join(lines)
