"""Where a stream's compute time goes: per-operation totals of the graphs it computes (`Stream.profile()`).

Example::

    with model.stream() as s, s.profile() as prof:
        s.feed("Once upon a time")
    print(prof.table(per=1))

While profiling, the runtime computes each graph one node at a time and times every node, so a profiled run is
slower than a plain one by one launch per node; the no-op view nodes ("VIEW", "RESHAPE", "PERMUTE",
"TRANSPOSE") measure that launch, and :attr:`Profile.launch_seconds` gives it per node. The nodes that measure
the attention received for the cache manager, which a bounded stream's prefill graphs compute beside the
model, have entries of their own (``scoring``; :attr:`Profile.scoring_seconds`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._native import check, ffi, lib

__all__ = ["OpTime", "Profile", "VIEW_OPS"]

VIEW_OPS = frozenset({"NONE", "VIEW", "RESHAPE", "PERMUTE", "TRANSPOSE"})


@dataclass(frozen=True)
class OpTime:
    """One ggml operation's total over the profiled work."""

    op: str            # ggml's name: "MUL_MAT", "SOFT_MAX", "SILU", ...
    nodes: int         # graph nodes of this operation computed
    seconds: float     # their time, each node timed alone (its launch included)
    bytes_read: int    # bytes of the operands they read (for MUL_MAT the weights and the activations)
    flops: int = 0     # floating-point operations of matrix products (MUL_MAT); 0 for other ops
    scoring: bool = False  # nodes measuring the attention received for the cache manager, not the model's

    @property
    def read_gbs(self) -> float | None:
        """The rate its operands were read at (GB/s), or None for views and untimed ops."""
        return self.bytes_read / self.seconds / 1e9 if self.bytes_read and self.seconds > 0 else None

    @property
    def gflops(self) -> float | None:
        """Its arithmetic rate (GFLOP/s) for matrix products, else None."""
        return self.flops / self.seconds / 1e9 if self.flops and self.seconds > 0 else None


class Profile:
    """What a :meth:`Stream.profile` block measured; :attr:`ops` is filled when the block ends."""

    def __init__(self, ops: list[OpTime] | None = None) -> None:
        self.ops: list[OpTime] = list(ops or [])

    @property
    def seconds(self) -> float:
        """The time of every node together."""
        return sum(op.seconds for op in self.ops)

    @property
    def scoring_seconds(self) -> float:
        """The time of the nodes that measured the attention received for the cache manager."""
        return sum(op.seconds for op in self.ops if op.scoring)

    @property
    def launch_seconds(self) -> float | None:
        """The mean time of a no-op view node: what timing one node alone adds to each node, or None
        if no view node was computed."""
        views = [op for op in self.ops if op.op in VIEW_OPS]
        nodes = sum(op.nodes for op in views)
        return sum(op.seconds for op in views) / nodes if nodes else None

    def __getitem__(self, op: str) -> OpTime:
        """The model's nodes of operation ``op`` (scoring's are apart: :attr:`ops`)."""
        for entry in self.ops:
            if entry.op == op and not entry.scoring:
                return entry
        raise KeyError(f"{op!r} was not computed; computed: {', '.join(e.op for e in self.ops)}")

    def table(self, per: int = 1, unit: str = "token") -> str:
        """A markdown table, most time first: nodes, milliseconds and bytes per `per` units of work (e.g. the
        number of decode steps profiled), each op's share of the node time, its read rate and, for matrix
        products, its arithmetic rate."""
        total = self.seconds or 1.0
        lines = [f"| op | nodes per {unit} | ms per {unit} | share | MB read per {unit} | GB/s | GFLOP/s |",
                 "|---|---|---|---|---|---|---|"]

        def rate(value: float | None) -> str:
            return "" if value is None else f"{value:.1f}"

        for op in self.ops:
            name = f"{op.op} (scoring)" if op.scoring else op.op
            lines.append(f"| {name} | {op.nodes / per:g} | {1e3 * op.seconds / per:.3f} | "
                         f"{100 * op.seconds / total:.1f} % | {op.bytes_read / per / 1e6:.1f} | "
                         f"{rate(op.read_gbs)} | {rate(op.gflops)} |")
        return "\n".join(lines)

    def _read(self, handle) -> None:
        n = ffi.new("int32_t *")
        status = lib.om_stream_get_profile(handle, ffi.NULL, 0, n)
        if status != lib.OM_STATUS_BUFFER_TOO_SMALL:
            check(status)
        out = ffi.new("om_op_time[]", max(1, n[0]))
        check(lib.om_stream_get_profile(handle, out, n[0], n))
        self.ops = [OpTime(ffi.string(e.op).decode(), int(e.n_nodes), float(e.seconds), int(e.bytes_read),
                           int(e.flops), bool(e.scoring)) for e in out[0:n[0]]]
