"""Broken and edited copies of GGUF files, for tests of what the runtime does with bad input."""

from __future__ import annotations

import gguf
import numpy as np


def rewrite_gguf(src, dst, *, arch=None, drop_tensor=None, reshape=None, drop_key=None):
    """Copies an F32 GGUF, changing one thing: its architecture, a tensor dropped or reshaped, a key dropped."""
    reader = gguf.GGUFReader(src)
    old_arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(str(dst), arch or old_arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", drop_key):
            continue
        if arch is not None:
            key = key.replace(f"{old_arch}.", f"{arch}.", 1)
        sub_type = field.types[1] if len(field.types) > 1 else None
        writer.add_key_value(key, field.contents(), field.types[0], sub_type)
    for t in reader.tensors:
        if t.name == drop_tensor:
            continue
        data = np.array(t.data)
        if t.name == reshape:
            data = data[..., :-1]
        writer.add_tensor(t.name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst
