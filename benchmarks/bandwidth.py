"""Read-only memory bandwidth of this machine with a given number of threads: the ceiling of decode, which
reads every weight once per token.

    python -m benchmarks.bandwidth [--threads 2] [--mib 512] [--repeats 5]

Each thread scans a buffer of its own (--mib each, far larger than the caches) with numpy's max reduction over
int64, which streams the data with vector loads and releases the GIL; the figure is the best of --repeats
scans of all buffers at once (bytes read ÷ wall time), since interference only ever makes a scan slower.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import numpy as np

DEFAULT_MIB = 512


def read_bandwidth_gbs(threads: int, mib: int = DEFAULT_MIB, repeats: int = 5) -> float:
    """Best read-only bandwidth (GB/s, 1e9 bytes) of `threads` threads each scanning `mib` MiB of its own."""
    if threads < 1 or mib < 1 or repeats < 1:
        raise ValueError("threads, mib and repeats must be positive")
    buffers = [np.ones(mib * 2**20 // 8, dtype=np.int64) for _ in range(threads)]   # written: pages are resident
    best = 0.0
    for _ in range(repeats):
        start = threading.Barrier(threads + 1)

        def scan(buffer: np.ndarray) -> None:
            start.wait()
            buffer.max()

        workers = [threading.Thread(target=scan, args=(b,)) for b in buffers]
        for w in workers:
            w.start()
        start.wait()
        t0 = time.perf_counter()
        for w in workers:
            w.join()
        best = max(best, sum(b.nbytes for b in buffers) / (time.perf_counter() - t0) / 1e9)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mib", type=int, default=DEFAULT_MIB, help="MiB scanned by each thread")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    print(f"read-only bandwidth, {args.threads} thread(s): "
          f"{read_bandwidth_gbs(args.threads, args.mib, args.repeats):.1f} GB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
