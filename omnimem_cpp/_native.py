"""The compiled binding of native/include/omnimem.h and the translation of status codes to exceptions."""

from __future__ import annotations

from . import errors
from ._omnimem_cffi import ffi, lib

__all__ = ["ffi", "lib", "check", "NativeHandle"]

_EXCEPTION_OF_STATUS = {
    lib.OM_STATUS_INVALID_ARGUMENT: errors.InvalidArgumentError,
    lib.OM_STATUS_FILE_NOT_FOUND: errors.ModelNotFoundError,
    lib.OM_STATUS_BAD_FILE: errors.ModelFileError,
    lib.OM_STATUS_UNSUPPORTED: errors.UnsupportedModelError,
    lib.OM_STATUS_MODEL_MISMATCH: errors.ModelMismatchError,
    lib.OM_STATUS_CONTEXT_FULL: errors.ContextFullError,
    lib.OM_STATUS_NO_TOKENIZER: errors.NoTokenizerError,
    lib.OM_STATUS_BACKEND_ERROR: errors.BackendError,
}


def check(status: int) -> None:
    """Raises the exception that matches a non-OK status, with the library's message."""
    if status == lib.OM_STATUS_OK:
        return
    message = ffi.string(lib.om_last_error()).decode("utf-8", "replace")
    if not message:
        message = ffi.string(lib.om_status_name(status)).decode()
    raise _EXCEPTION_OF_STATUS.get(status, errors.OmnimemError)(message)


class NativeHandle:
    """Base of the classes that own one native object in ``self._handle``: subclasses define ``close()``
    (freeing it exactly once); this gives them ``with`` and freeing at garbage collection."""

    _handle = None

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if self._handle is not None:
            self.close()
