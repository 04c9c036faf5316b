"""Generates the C source of the cffi binding (API mode) from omnimem.h.

Run by CMake at build time: `python cffi_build.py omnimem.h out.c`. The declarations are taken from the
header itself (the part inside its extern "C" block), so the header stays the single source of truth.
"""

import re
import sys

import cffi


def declarations(header_text: str) -> str:
    """The header's declarations in a form cffi's parser accepts."""
    start = header_text.index('extern "C" {')
    start = header_text.index("#endif", start) + len("#endif")
    end = header_text.rindex("#ifdef __cplusplus")
    body = header_text[start:end]
    body = re.sub(r"\bOM_API\s+", "", body)
    return body


def main(header_path: str, out_path: str) -> None:
    with open(header_path, encoding="utf-8") as f:
        text = f.read()
    ffi = cffi.FFI()
    ffi.cdef(declarations(text))
    ffi.set_source("omnimem_cpp._omnimem_cffi", '#include "omnimem.h"')
    ffi.emit_c_code(out_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
