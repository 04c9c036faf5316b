"""`Stream`: one session over a model — feed tokens or text, read logits, ask questions."""

from __future__ import annotations

import codecs
import contextlib
import os
import threading
from typing import TYPE_CHECKING, Iterator, Optional, Sequence, Union, overload

import numpy as np

from . import chat
from ._native import NativeHandle, check, ffi, lib
from .errors import InvalidArgumentError
from .memory import (
    MODALITIES,
    POLICIES,
    Budget,
    StreamStats,
    fill_params,
    read_stats,
    stream_budget,
)
from .profile import Profile

if TYPE_CHECKING:
    from typing import Literal

    from .model import Model

__all__ = ["Stream", "POLICIES", "KV_TYPES"]

KV_TYPES = {"f16": 0, "f32": 1}
# one row of Stream.layer_rows, laid out as the header's om_row_info
ROW_DTYPE = np.dtype([("token", np.int32), ("pos", np.int32, (3,)), ("modality", np.int32)])


class Stream(NativeHandle):
    """A session over a :class:`Model`: its own memory, positions and last logits.

    Example::

        with model.stream(system="You are a helpful assistant.") as s:
            s.feed("The capital of France is Paris.")
            print(s.ask("What is the capital of France?", max_tokens=16))

    A bounded stream::

        with model.stream(policy="omnimem", budget="8k") as s:     # or budget="2GB"
            for chunk in om.media.open("talk.mp4"):
                s.feed(chunk)
            print(s.ask("What was on the slide when the bell rang?"))
            print(s.stats().kv_bytes)

    Args:
        model: the model the stream runs on; it must stay open while the stream is used.
        policy: how the memory is bounded (see :mod:`omnimem_cpp.memory`): ``"full"`` keeps every token;
            ``"omnimem"``, ``"omnimem-nosplit"``, ``"sink-window"``, ``"attention-topk"``, ``"uniform"``
            and ``"random"`` compact every layer to its budget after every chunk of media.
        budget: audio+visual rows kept per layer on average (``8192``, ``"8k"``), the K/V memory in bytes
            (``"2GB"``), or a budget table (``"budget.json"``, :class:`~omnimem_cpp.memory.Budget`).
        text_cap: the most text rows kept after the first media (the oldest go first); 0: all text is kept.
        lam: OmniMem's exponent λ on the attention a row received (0: redundancy alone).
        n_sink: ``"sink-window"``'s first media rows; seed: ``"random"``'s seed.
        score_queries: at most how many of each evaluated batch's queries measure the attention a row
            received (``"omnimem"`` with ``lam > 0``, ``"attention-topk"``), evenly spaced over the batch: an
            estimate of the sum over all of them at a fraction of its cost. 0: every query, the method's sum.
        redundancy: ``"value"`` (default: neighbour cosines of the stored V rows) or ``"hidden"`` (of the
            layer-input hidden states, as the method defines; stores ``n_embd`` more values per row).
        neighbours: which rows a row's redundancy is measured against: ``"sequence"`` (default, the
            method's: the rows before and after it), ``"frame"`` (a visual row: the same patch in the
            frames before and after it that the layer holds, so that a frame repeating the last one scores
            as redundant) or ``"both"`` (a visual row: the method's score times how much its frame changed
            from the frames around it).
        n_extra: rows per layer beyond the budget, for text and the chunk being evaluated (0: n_batch + 512).
        n_ctx: rows of memory per layer of an unbounded (``"full"``) stream.
        n_batch: the most tokens evaluated in one graph; longer feeds are split.
        kv_type: ``"f16"`` (default, half the memory) or ``"f32"`` (exact, for parity checks).
        system: a system prompt fed first, in the model's chat layout.

    Calls on one stream are serialized by a lock; use one stream per thread for parallel work.
    """

    def __init__(
        self,
        model: "Model",
        *,
        policy: str = "full",
        budget: Union[Budget, int, str, os.PathLike, dict, None] = None,
        text_cap: int = 0,
        lam: float = 0.02,
        n_sink: int = 4,
        seed: int = 0,
        redundancy: str = "value",
        neighbours: str = "sequence",
        score_queries: int = 32,
        n_extra: int = 0,
        n_ctx: int = 4096,
        n_batch: int = 512,
        kv_type: str = "f16",
        system: Optional[str] = None,
    ) -> None:
        if kv_type not in KV_TYPES:
            raise InvalidArgumentError(f"unknown kv_type {kv_type!r}; available: {', '.join(KV_TYPES)}")
        if n_ctx < 1 or n_batch < 1:
            raise InvalidArgumentError(f"n_ctx and n_batch must be positive, got {n_ctx} and {n_batch}")
        self.model = model
        params = ffi.new("om_stream_params *")
        lib.om_stream_default_params(params)
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.kv_type = KV_TYPES[kv_type]
        fill_params(params.memory, policy=policy, lam=lam, n_sink=n_sink, seed=seed, text_cap=text_cap,
                    n_extra=n_extra, redundancy=redundancy, score_queries=score_queries, neighbours=neighbours)
        budget_table = stream_budget(model, params, budget)
        out = ffi.new("om_stream **")
        check(lib.om_stream_init(model.handle, params, out))
        del budget_table   # copied by init
        self._attach(model, out[0])
        if system is not None:
            self.feed(chat.system_turn(system))

    @classmethod
    def load(cls, model: Model, path: str | os.PathLike) -> Stream:
        """Restores a stream saved with :meth:`save` over the same model (see :meth:`Model.load_stream`)."""
        out = ffi.new("om_stream **")
        check(lib.om_stream_load(model.handle, os.fsencode(path), out))
        stream = cls.__new__(cls)
        stream._attach(model, out[0])
        return stream

    def _attach(self, model: Model, handle) -> None:
        self.model = model
        self._handle = handle
        params = ffi.new("om_stream_params *")
        check(lib.om_stream_get_params(handle, params))
        self.policy = next(name for name, code in POLICIES.items() if code == params.memory.policy)
        self._lock = threading.RLock()
        self._logits = np.empty(model.info.n_vocab, dtype=np.float32)
        self._resampler = None   # for audio fed at another rate than 16 kHz
        model._register(self)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the whole stream — memory, positions, the policy's state, an open media block with its
        pending media — to ``path``, so it can be restored after a restart with :meth:`Model.load_stream`.
        The file appears only once complete. Audio held by a resampler (fed at another rate than 16 kHz) is
        flushed into the stream first."""
        with self._lock:
            self._flush_resampler()
            check(lib.om_stream_save(self.handle, os.fsencode(path)))

    # --- lifetime ---------------------------------------------------------------------------------------

    @property
    def handle(self):
        if self._handle is None:
            raise InvalidArgumentError("this stream is closed")
        return self._handle

    def close(self) -> None:
        """Frees the stream's memory. Safe to call twice."""
        with self._lock:
            if self._handle is None:
                return
            lib.om_stream_free(self._handle)
            self._handle = None
        self.model._unregister(self)

    # --- feeding ----------------------------------------------------------------------------------------

    @property
    def n_tokens(self) -> int:
        """Tokens fed so far (the sequence length)."""
        return int(lib.om_stream_n_tokens(self.handle))

    @property
    def next_position(self) -> int:
        """The position the next token gets (the M-RoPE temporal axis)."""
        return int(lib.om_stream_next_pos(self.handle))

    def feed_tokens(self, tokens: Union[Sequence[int], np.ndarray]) -> None:
        """Evaluates token ids at the next positions. On error the stream is unchanged."""
        ids = np.ascontiguousarray(tokens, dtype=np.int32)
        if ids.ndim != 1 or ids.size == 0:
            raise InvalidArgumentError("feed_tokens needs a non-empty 1-D sequence of token ids")
        with self._lock:
            self._flush_resampler()   # text closes an open block: the resampled audio must be in it first
            check(lib.om_stream_feed_tokens(self.handle, ffi.from_buffer("int32_t[]", ids), int(ids.size)))

    def feed_embeddings(self, embeddings: np.ndarray, positions: np.ndarray,
                        modality: Union[str, Sequence[str], np.ndarray] = "text") -> None:
        """Evaluates inputs given as embeddings in the model's input space, at explicit M-RoPE positions.

        Args:
            embeddings: float32 ``[n, n_embd]``.
            positions: ``[n, 3]`` (temporal, height, width) positions, as transformers' ``get_rope_index``
                gives them; text fed later continues at 1 + the largest position.
            modality: ``"text"``, ``"visual"`` or ``"audio"`` for all rows, or one per row (names or the
                codes 0, 1, 2) — what the cache manager budgets separately.
        """
        embd = np.ascontiguousarray(embeddings, dtype=np.float32)
        pos = np.ascontiguousarray(positions, dtype=np.int32)
        n_embd = self.model.info.n_embd
        if embd.ndim != 2 or embd.shape[1] != n_embd or embd.shape[0] == 0:
            raise InvalidArgumentError(f"embeddings must have shape [n, {n_embd}], got {list(embd.shape)}")
        if pos.shape != (embd.shape[0], 3):
            raise InvalidArgumentError(f"positions must have shape [{embd.shape[0]}, 3], got {list(pos.shape)}")
        mods = _modality_codes(modality, embd.shape[0])
        with self._lock:
            check(lib.om_stream_feed_embeddings(self.handle, ffi.from_buffer("float[]", embd),
                                                ffi.from_buffer("int32_t[]", pos), ffi.from_buffer("int8_t[]", mods),
                                                embd.shape[0]))

    def encode_audio(self, mel: np.ndarray) -> np.ndarray:
        """Runs the audio encoder on log-mel features ``[n_mel, n_frames]`` (100 frames per second of 16 kHz
        audio) and returns the audio embeddings ``[n_tokens, n_embd]`` (25 per second). The stream's memory
        is not touched. Needs a model loaded with its projector (``mmproj=``)."""
        features = np.ascontiguousarray(mel, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] == 0:
            raise InvalidArgumentError(f"mel must have shape [n_mel, n_frames], got {list(features.shape)}")
        n_tokens = ffi.new("int32_t *")
        n_mel, n_frames = features.shape
        with self._lock:
            status = lib.om_stream_encode_audio(self.handle, ffi.from_buffer("float[]", features), n_mel, n_frames,
                                                ffi.NULL, 0, n_tokens)
            if status != lib.OM_STATUS_BUFFER_TOO_SMALL:
                check(status)
            out = np.empty((n_tokens[0], self.model.info.n_embd), dtype=np.float32)
            check(lib.om_stream_encode_audio(self.handle, ffi.from_buffer("float[]", features), n_mel, n_frames,
                                             ffi.from_buffer("float[]", out), out.size, n_tokens))
        return out

    def encode_image(self, patches: np.ndarray, grid: Sequence[int]) -> np.ndarray:
        """Runs the vision encoder on the patches of an image or a video clip and returns the visual
        embeddings ``[n_tokens, n_embd]``, one per 2×2 patches in raster order ``(t, h/2, w/2)``. The
        stream's memory is not touched. Needs a model loaded with its projector (``mmproj=``).

        Args:
            patches: float32 ``[t·h·w, 1176]`` and ``grid``: ``(t, h, w)`` in patches, as
                :func:`omnimem_cpp.media.image_patches` returns them.

        Raises:
            InvalidArgumentError: no vision encoder is loaded, the patches are not ``[n, 1176]``, or the grid
                does not hold exactly ``n`` patches with ``h`` and ``w`` even.
        """
        pixels = np.ascontiguousarray(patches, dtype=np.float32)
        if pixels.ndim != 2 or pixels.shape[0] == 0 or pixels.shape[1] != lib.OM_IMAGE_PATCH_DIM:
            raise InvalidArgumentError(f"patches must have shape [n, {lib.OM_IMAGE_PATCH_DIM}], got "
                                       f"{list(pixels.shape)}; make them with omnimem_cpp.media.image_patches")
        thw = np.asarray(grid)
        if thw.shape != (3,) or not np.issubdtype(thw.dtype, np.integer) or not ((0 <= thw) & (thw < 2**31)).all():
            raise InvalidArgumentError(f"grid must be three non-negative integers (t, h, w), got {grid!r}")
        if pixels.shape[0] >= 2**31:
            raise InvalidArgumentError(f"{pixels.shape[0]} patches are too many for one call")
        grid_c = ffi.new("int32_t[3]", [int(v) for v in thw])
        pixels_c = ffi.from_buffer("float[]", pixels)
        n_tokens = ffi.new("int32_t *")
        with self._lock:
            status = lib.om_stream_encode_image(self.handle, pixels_c, pixels.shape[0], grid_c, ffi.NULL, 0, n_tokens)
            if status != lib.OM_STATUS_BUFFER_TOO_SMALL:
                check(status)
            out = np.empty((n_tokens[0], self.model.info.n_embd), dtype=np.float32)
            check(lib.om_stream_encode_image(self.handle, pixels_c, pixels.shape[0], grid_c,
                                             ffi.from_buffer("float[]", out), out.size, n_tokens))
        return out

    def feed(
        self,
        text: Optional[str] = None,
        *,
        video: Optional[np.ndarray] = None,
        audio: Optional[np.ndarray] = None,
        fps: float = 2.0,
        sample_rate: int = 16000,
        image: Optional[np.ndarray] = None,
    ) -> None:
        """Feeds text, media, or a chunk from :func:`omnimem_cpp.media.open`.

        Examples::

            s.feed("Some text")                                # tokens, special tokens included
            for chunk in om.media.open("talk.mp4"):
                s.feed(chunk)                                  # 2-second audio+video chunks
            s.feed(video=frames, audio=pcm, fps=2.0)           # frames uint8 [N, H, W, 3]; pcm float [n]
            s.feed(image=rgb)                                  # a still image, uint8 [H, W, 3]

        Media goes into an audio-visual block that the first media feed opens (with the model's opening
        tokens) and that text, an image or :meth:`close_media` closes. Pieces may have any size: whole
        2-second chunks are evaluated as they complete, the rest waits. Audio at another ``sample_rate`` is
        resampled to 16 kHz and multi-channel audio ``[n, channels]`` averaged to mono. Every feed is all or
        nothing: on error the stream is unchanged.
        """
        from .media import Chunk

        if isinstance(text, Chunk):
            chunk = text
            text, video, audio = None, chunk.video, chunk.audio
            fps, sample_rate = chunk.fps, chunk.sample_rate
        if sum(x is not None for x in (text, image)) + (video is not None or audio is not None) != 1:
            raise InvalidArgumentError("feed takes one of: text, image, or video and/or audio")
        if text is not None:
            self.feed_tokens(self.model.tokenize(text, special=True))
        elif image is not None:
            rgb = _rgb_frames(image, still=True)
            with self._lock:
                self._flush_resampler()
                check(lib.om_stream_feed_image(self.handle, ffi.from_buffer("uint8_t[]", rgb), rgb.shape[0],
                                               rgb.shape[1]))
        else:
            frames = _rgb_frames(video, still=False) if video is not None else None
            pcm = self._pcm_16k(audio, sample_rate) if audio is not None else None
            if pcm is not None and pcm.size == 0:
                pcm = None       # all still inside the resampler's filter
                if frames is None:
                    return
            if fps <= 0:
                raise InvalidArgumentError(f"fps must be positive, got {fps}")
            n_frames, height, width = frames.shape[:3] if frames is not None else (0, 0, 0)
            with self._lock:
                check(lib.om_stream_feed_media(
                    self.handle, ffi.from_buffer("uint8_t[]", frames) if frames is not None else ffi.NULL, n_frames,
                    height, width, fps, ffi.from_buffer("float[]", pcm) if pcm is not None else ffi.NULL,
                    pcm.size if pcm is not None else 0))

    def close_media(self) -> None:
        """Closes the open audio-visual block: evaluates its last partial chunk and feeds the closing tokens.
        Feeding text does this by itself."""
        with self._lock:
            self._flush_resampler()
            check(lib.om_stream_close_media(self.handle))

    @property
    def media_open(self) -> bool:
        """Whether an audio-visual block is open (media fed, not yet closed)."""
        return bool(lib.om_stream_media_open(self.handle))

    def _pcm_16k(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        pcm = np.asarray(audio, dtype=np.float32)
        if pcm.ndim == 2:
            pcm = pcm.mean(axis=1)
        if pcm.ndim != 1 or pcm.size == 0:
            raise InvalidArgumentError(f"audio must be float PCM [n] or [n, channels], got shape {list(pcm.shape)}")
        if sample_rate == 16000:
            return np.ascontiguousarray(pcm)
        # one resampler per block and rate keeps its filter state across feeds, so pieces join seamlessly
        if self._resampler is None or self._resampler.rate_in != sample_rate:
            from .media import Resampler

            self._flush_resampler()
            self._resampler = Resampler(sample_rate)
        return self._resampler(pcm)

    def _flush_resampler(self) -> None:
        """Feeds the samples the resampler still holds: called before the block closes."""
        if self._resampler is None:
            return
        tail, self._resampler = self._resampler.flush(), None
        if tail.size and self.media_open:
            check(lib.om_stream_feed_media(self.handle, ffi.NULL, 0, 0, 0, 2.0, ffi.from_buffer("float[]", tail),
                                           tail.size))

    def logits(self) -> np.ndarray:
        """Float32 logits of the last fed position, shape ``[n_vocab]`` (a copy)."""
        with self._lock:
            check(lib.om_stream_get_logits(self.handle, ffi.from_buffer("float[]", self._logits), self._logits.size))
            return self._logits.copy()

    def rollback(self, n_tokens: int) -> None:
        """Returns the stream to its state after its first ``n_tokens`` tokens, which must be where an
        earlier feed ended. The logits are unavailable until the next feed. After a compaction only points
        at or after it (or 0) can be returned to."""
        with self._lock:
            check(lib.om_stream_rollback(self.handle, n_tokens))

    def layer_rows(self, layer: int) -> np.ndarray:
        """The rows decoder layer ``layer`` keeps in memory, ascending by token — after compactions, each layer
        keeps its own subset. A structured array with fields ``token`` (the index in the stream, 0 for the
        first token fed), ``pos`` (the M-RoPE position ``[t, h, w]``; media time is ``t`` at 25 per second)
        and ``modality`` (0 text, 1 visual, 2 audio)::

            rows = s.layer_rows(0)
            audio_seconds = rows["pos"][rows["modality"] == 2, 0] / 25
        """
        n = ffi.new("int32_t *")
        with self._lock:
            status = lib.om_stream_get_layer_rows(self.handle, layer, ffi.NULL, 0, n)
            if status != lib.OM_STATUS_BUFFER_TOO_SMALL:
                check(status)
            out = np.zeros(n[0], dtype=ROW_DTYPE)
            check(lib.om_stream_get_layer_rows(self.handle, layer, ffi.cast("om_row_info *", ffi.from_buffer(out)),
                                               out.size, n))
        return out

    def layer_tokens(self, layer: int) -> np.ndarray:
        """The tokens decoder layer ``layer`` keeps in memory, as their indices in the stream, ascending."""
        return self.layer_rows(layer)["token"].copy()

    def stats(self) -> StreamStats:
        """What the memory holds now — rows per layer and modality, K/V bytes — and what bounding it cost:
        compactions and the time spent scoring and compacting, next to the whole ingest time."""
        with self._lock:
            return read_stats(self.handle)

    @contextlib.contextmanager
    def profile(self) -> Iterator[Profile]:
        """Times every operation the stream computes inside the ``with`` block (see
        :mod:`omnimem_cpp.profile`); the :class:`~omnimem_cpp.profile.Profile` it yields is filled when the block
        ends::

            with s.profile() as prof:
                s.feed_tokens(ids)
            print(prof.table(per=len(ids)))
            print(prof["MUL_MAT"].read_gbs)

        Profiled work is slower: each graph node is computed and timed alone.
        """
        prof = Profile()
        with self._lock:
            check(lib.om_stream_profile(self.handle, True))
        try:
            yield prof
            with self._lock:
                prof._read(self.handle)
        finally:
            with self._lock:
                if self._handle is not None:
                    check(lib.om_stream_profile(self._handle, False))

    # --- asking -----------------------------------------------------------------------------------------

    @overload
    def ask(self, question: str, *, max_tokens: int = ..., temperature: float = ..., top_k: int = ...,
            top_p: float = ..., seed: int = ..., keep: bool = ..., stream: "Literal[False]" = ...) -> str: ...

    @overload
    def ask(self, question: str, *, max_tokens: int = ..., temperature: float = ..., top_k: int = ...,
            top_p: float = ..., seed: int = ..., keep: bool = ..., stream: "Literal[True]") -> Iterator[str]: ...

    def ask(
        self,
        question: str,
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        top_k: int = 40,
        top_p: float = 0.95,
        seed: int = 0,
        keep: bool = False,
        stream: bool = False,
    ) -> Union[str, Iterator[str]]:
        """Asks a question about everything fed so far and generates the answer.

        The question is wrapped in the model's chat layout. ``temperature=0`` is greedy; otherwise the
        answer is drawn with top-k, top-p and a seed. Unless ``keep=True``, the question and the answer
        are rolled back afterwards, so the stream can be asked again and keep going unchanged — also when
        the caller stops iterating early or is interrupted.

        Returns the answer, or with ``stream=True`` an iterator of text pieces as they are generated.
        """
        if max_tokens < 1:
            raise InvalidArgumentError(f"max_tokens must be at least 1, got {max_tokens}")
        pieces = self._generate(chat.user_turn(question), max_tokens, temperature, top_k, top_p, seed, keep)
        return pieces if stream else "".join(pieces)

    def _generate(self, prompt: str, max_tokens: int, temperature: float, top_k: int, top_p: float, seed: int,
                  keep: bool) -> Iterator[str]:
        sampler = _Sampler(temperature, top_k, top_p, seed)
        prompt_ids = self.model.tokenize(prompt, special=True)
        with self._lock:
            self._flush_resampler()   # before the mark: resampled audio stays in the stream after the rollback
            mark = self.n_tokens
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            try:
                self.feed_tokens(prompt_ids)
                for _ in range(max_tokens):
                    token = sampler.sample(self)
                    if self.model.is_end_of_generation(token):
                        break
                    piece = decoder.decode(self.model.token_bytes(token))
                    self.feed_tokens([token])
                    if piece:
                        yield piece
                tail = decoder.decode(b"", final=True)
                if tail:
                    yield tail
            finally:
                sampler.close()
                if not keep:
                    self.rollback(mark)


def _modality_codes(modality: Union[str, Sequence[str], np.ndarray], n: int) -> np.ndarray:
    if isinstance(modality, str):
        if modality not in MODALITIES:
            raise InvalidArgumentError(f"unknown modality {modality!r}; use one of {', '.join(MODALITIES)}")
        return np.full(n, MODALITIES[modality], dtype=np.int8)
    codes = np.array([MODALITIES.get(m, m) if isinstance(m, str) else m for m in modality])
    if codes.shape != (n,) or not np.isin(codes, list(MODALITIES.values())).all():
        raise InvalidArgumentError(f"modality must be one name or {n} names/codes from {list(MODALITIES)}")
    return np.ascontiguousarray(codes, dtype=np.int8)


def _rgb_frames(frames: np.ndarray, *, still: bool) -> np.ndarray:
    rgb = np.ascontiguousarray(frames)
    shape = "[H, W, 3]" if still else "[N, H, W, 3]"
    if rgb.dtype != np.uint8 or rgb.ndim != (3 if still else 4) or rgb.shape[-1] != 3 or 0 in rgb.shape:
        raise InvalidArgumentError(f"{'image' if still else 'video'} must be uint8 RGB {shape}, got {rgb.dtype} "
                                   f"{list(rgb.shape)}")
    return rgb


class _Sampler:
    """Owns one native sampler (llama.cpp's chain) for one generation."""

    def __init__(self, temperature: float, top_k: int, top_p: float, seed: int) -> None:
        params = ffi.new("om_sampler_params *")
        lib.om_sampler_default_params(params)
        params.temperature = temperature
        params.top_k = top_k
        params.top_p = top_p
        params.seed = seed & 0xFFFFFFFF
        out = ffi.new("om_sampler **")
        check(lib.om_sampler_init(params, out))
        self._handle = out[0]

    def sample(self, stream: Stream) -> int:
        token = ffi.new("int32_t *")
        check(lib.om_sampler_sample(self._handle, stream.handle, token))
        return int(token[0])

    def close(self) -> None:
        if self._handle is not None:
            lib.om_sampler_free(self._handle)
            self._handle = None
