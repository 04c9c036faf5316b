"""`Model`: a GGUF model loaded by the native runtime, shared by the streams created from it."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Optional

from ._native import NativeHandle, check, ffi, lib
from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from .stream import Stream

__all__ = ["Model", "ModelInfo"]


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is: its architecture, sizes and where it runs."""

    architecture: str
    name: str
    device: str
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_embd_head: int
    n_ff: int
    n_ctx_train: int
    rope_sections: tuple[int, int, int, int]
    rope_freq_base: float
    rms_norm_eps: float
    n_params: int
    weights_bytes: int
    weights_packed_bytes: int
    n_threads: int
    has_tokenizer: bool
    tied_embeddings: bool
    has_audio_encoder: bool
    has_vision_encoder: bool
    audio_n_mel: int


class Model(NativeHandle):
    """A text-model GGUF (as written by ``omnimem convert``) loaded onto a ggml device.

    Example::

        import omnimem_cpp as om
        with om.Model("model.gguf") as model:
            with model.stream() as s:
                s.feed_tokens(model.tokenize("Hello"))
                print(s.logits().argmax())

    Args:
        path: the text-model ``.gguf`` file.
        mmproj: the multimodal projector ``.gguf`` (audio and vision encoders) written by
            ``omnimem convert --mmproj``; without it the model takes text and embeddings only.
        n_threads: CPU threads for compute; ``None`` uses every core.
        device: ``"auto"`` (a GPU if this build has one, else the CPU), ``"cpu"``, or a ggml device name
            such as ``"CUDA0"``.
        use_mmap: map the file instead of reading it; CPU weights are then used in place.
        use_repack: give matrix weights a faster layout on the CPU: our kernels' for Q8_0, Q4_0 and F16 where
            the CPU has AMX (``info.weights_packed_bytes``), ggml's repacked layouts otherwise.
        encoder_cache: encoder outputs kept per tower for reuse, keyed by their exact input (0: off). With
            several streams of this model fed the same media — policies or budgets compared side by side,
            several viewers of one camera — each chunk is then encoded once; 1 is enough when they are fed
            in lockstep. A single stream gains nothing: consecutive chunks of real video never repeat.

    A model is read-only (its encoder cache aside, which locks): several streams may use it at once, each
    from its own thread.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mmproj: Optional[str | os.PathLike[str]] = None,
        n_threads: Optional[int] = None,
        device: str = "auto",
        use_mmap: bool = True,
        use_repack: bool = True,
        encoder_cache: int = 0,
    ) -> None:
        self.path = os.fspath(path)
        if n_threads is not None and n_threads < 1:
            raise InvalidArgumentError(f"n_threads must be at least 1, got {n_threads}")
        if encoder_cache < 0:
            raise InvalidArgumentError(f"encoder_cache must be 0 (off) or more entries, got {encoder_cache}")
        params = ffi.new("om_model_params *")
        lib.om_model_default_params(params)
        device_c = ffi.new("char[]", device.encode())
        params.device = device_c
        self.mmproj = os.fspath(mmproj) if mmproj is not None else None
        mmproj_c = ffi.new("char[]", self.mmproj.encode()) if self.mmproj is not None else ffi.NULL
        params.mmproj_path = mmproj_c
        params.n_threads = n_threads or 0
        params.use_mmap = use_mmap
        params.use_repack = use_repack
        params.n_encoder_cache = encoder_cache
        out = ffi.new("om_model **")
        check(lib.om_model_load(self.path.encode(), params, out))
        self._handle = out[0]
        self._streams: "set[Stream]" = set()
        self._lock = threading.Lock()
        self.info = self._read_info()

    @property
    def encoder_cache_hits(self) -> int:
        """Encoder calls of this model's streams answered from its encoder cache so far (see ``encoder_cache``)."""
        return int(lib.om_model_encoder_cache_hits(self.handle))

    # --- lifetime ---------------------------------------------------------------------------------------

    @property
    def handle(self):
        if self._handle is None:
            raise InvalidArgumentError("this model is closed")
        return self._handle

    def close(self) -> None:
        """Frees the model, closing its open streams first. Safe to call twice."""
        if self._handle is None:
            return
        for stream in list(self._streams):
            stream.close()
        lib.om_model_free(self._handle)
        self._handle = None

    def __repr__(self) -> str:
        i = self.info
        return (f"Model({self.path!r}, {i.architecture}, {i.n_layer} layers, {i.n_embd} wide, "
                f"{i.n_params / 1e6:.1f}M params on {i.device})")

    def _read_info(self) -> ModelInfo:
        c = ffi.new("om_model_info *")
        check(lib.om_model_get_info(self.handle, c))
        return ModelInfo(
            architecture=ffi.string(c.architecture).decode(),
            name=ffi.string(c.name).decode("utf-8", "replace"),
            device=ffi.string(c.device).decode(),
            n_vocab=c.n_vocab,
            n_embd=c.n_embd,
            n_layer=c.n_layer,
            n_head=c.n_head,
            n_head_kv=c.n_head_kv,
            n_embd_head=c.n_embd_head,
            n_ff=c.n_ff,
            n_ctx_train=c.n_ctx_train,
            rope_sections=tuple(c.rope_sections),
            rope_freq_base=c.rope_freq_base,
            rms_norm_eps=c.rms_norm_eps,
            n_params=c.n_params,
            weights_bytes=c.weights_bytes,
            weights_packed_bytes=c.weights_packed_bytes,
            n_threads=c.n_threads,
            has_tokenizer=bool(c.has_tokenizer),
            tied_embeddings=bool(c.tied_embeddings),
            has_audio_encoder=bool(c.has_audio_encoder),
            has_vision_encoder=bool(c.has_vision_encoder),
            audio_n_mel=c.audio_n_mel,
        )

    # --- tokenizer --------------------------------------------------------------------------------------

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        """Token ids of ``text``. ``special``: special tokens written in the text (``"<|im_start|>"``) map
        to their ids instead of being spelled out."""
        data = text.encode("utf-8")
        capacity = len(data) + 8
        for _ in range(2):
            buf = ffi.new("int32_t[]", capacity)
            n = ffi.new("int32_t *")
            status = lib.om_tokenize(self.handle, data, len(data), special, buf, capacity, n)
            if status == lib.OM_STATUS_BUFFER_TOO_SMALL:
                capacity = n[0]
                continue
            check(status)
            return list(buf[0 : n[0]])
        raise AssertionError("unreachable: the second call has the exact size")

    def token_bytes(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of one token (possibly part of a UTF-8 character)."""
        capacity = 64
        for _ in range(2):
            buf = ffi.new("char[]", capacity)
            n = ffi.new("int32_t *")
            status = lib.om_token_to_piece(self.handle, token, special, buf, capacity, n)
            if status == lib.OM_STATUS_BUFFER_TOO_SMALL:
                capacity = n[0]
                continue
            check(status)
            return ffi.unpack(buf, n[0])
        raise AssertionError("unreachable: the second call has the exact size")

    def detokenize(self, tokens: Iterable[int], *, special: bool = False) -> str:
        """The text of a token sequence (invalid UTF-8 is replaced)."""
        return b"".join(self.token_bytes(t, special=special) for t in tokens).decode("utf-8", "replace")

    def is_end_of_generation(self, token: int) -> bool:
        """Whether ``token`` ends an answer (end of turn or of text)."""
        return bool(lib.om_token_is_eog(self.handle, token))

    # --- streams ----------------------------------------------------------------------------------------

    def stream(self, policy: str = "full", **options: Any) -> "Stream":
        """Opens a stream (a session with its own memory) over this model; ``options`` are
        :class:`Stream`'s (budget, text_cap, n_batch, kv_type, system, ...)."""
        from .stream import Stream

        return Stream(self, policy=policy, **options)

    def load_stream(self, path: str | os.PathLike[str]) -> "Stream":
        """Restores a stream saved with :meth:`Stream.save` (its memory, positions and policy) over this
        model — loaded with the same projector if the stream had media open.

        Raises:
            ModelFileError: the file is not a complete stream file; ModelMismatchError: it was saved from
            another model.
        """
        from .stream import Stream

        return Stream.load(self, path)

    def _register(self, stream: "Stream") -> None:
        with self._lock:
            self._streams.add(stream)

    def _unregister(self, stream: "Stream") -> None:
        with self._lock:
            self._streams.discard(stream)
