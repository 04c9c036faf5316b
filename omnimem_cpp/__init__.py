"""omnimem_cpp: stream audio-visual LLMs on small machines with a bounded, modality-aware KV cache.

Quick start::

    import omnimem_cpp as om
    with om.Model("model.gguf") as model, model.stream() as s:
        s.feed("A long story ...")
        print(s.ask("What happened first?", max_tokens=64))
"""

from . import media, memory
from ._native import ffi as _ffi
from ._native import lib as _lib
from .errors import (
    BackendError,
    ContextFullError,
    ConversionError,
    InvalidArgumentError,
    MediaError,
    ModelFileError,
    ModelMismatchError,
    ModelNotFoundError,
    NoTokenizerError,
    OmnimemError,
    UnsupportedModelError,
)
from .memory import POLICIES, Budget
from .model import Model, ModelInfo
from .stream import Stream

__version__ = _ffi.string(_lib.om_version()).decode()


def system_info() -> str:
    """The library version, the ggml devices of this build and the CPU features ggml uses."""
    return _ffi.string(_lib.om_system_info()).decode()


__all__ = [
    "Model",
    "ModelInfo",
    "Stream",
    "POLICIES",
    "Budget",
    "memory",
    "system_info",
    "media",
    "OmnimemError",
    "InvalidArgumentError",
    "ModelFileError",
    "ModelNotFoundError",
    "UnsupportedModelError",
    "ModelMismatchError",
    "ConversionError",
    "MediaError",
    "ContextFullError",
    "NoTokenizerError",
    "BackendError",
]
