"""The exceptions omnimem_cpp raises. Every message says what went wrong and what to do about it."""

from __future__ import annotations


class OmnimemError(Exception):
    """Base class of every error raised by omnimem_cpp."""


class InvalidArgumentError(OmnimemError, ValueError):
    """An argument is out of range or inconsistent with the model or the stream."""


class ModelFileError(OmnimemError, ValueError):
    """A model file is missing, not a GGUF file, truncated or corrupt."""


class ModelNotFoundError(ModelFileError, FileNotFoundError):
    """A model path does not exist or cannot be opened."""


class UnsupportedModelError(OmnimemError, ValueError):
    """A readable file of an architecture, tensor type or option this build does not support."""


class ModelMismatchError(OmnimemError, ValueError):
    """Hyperparameters or tensors of a model file are inconsistent (missing tensor, wrong shape)."""


class ConversionError(OmnimemError, ValueError):
    """A checkpoint cannot be converted (missing files, unsupported architecture, shape mismatch)."""


class MediaError(OmnimemError, ValueError):
    """A media source is missing, is not audio or video FFmpeg can read, has neither track, or fails to decode."""


class ContextFullError(OmnimemError):
    """The stream's memory has no room left for what was fed."""


class NoTokenizerError(OmnimemError):
    """The model file carries no tokenizer, so text cannot be tokenized or detokenized."""


class BackendError(OmnimemError, RuntimeError):
    """A ggml backend failed to allocate memory or to compute."""
