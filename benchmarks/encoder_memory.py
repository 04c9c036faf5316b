"""Peak memory of the vision tower on one image, at Qwen2.5-Omni-3B dimensions with random weights: how the
encoders' working memory grows with the image (linearly since attention runs through ggml's flash-attention
kernel; with explicit score matrices the full-attention blocks grew with the square of the patch count).

    python -m benchmarks.encoder_memory                       # 336x308 and 644x644 stills, 2 threads
    python -m benchmarks.encoder_memory --sizes 644x644,1280x720

Each image is encoded in its own child process, after one warm-up encode of a small image (so the weights
are paged in and the scheduler's buffers exist); the figure is the growth of the process's peak RSS during
the measured encode, which is the compute memory the image needs beyond what a small image needs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys

import numpy as np

from .random_gguf import QWEN25_OMNI_3B, QWEN25_OMNI_3B_PROJECTOR, cached_projector_gguf, cached_text_gguf
from .text_speed import DEFAULT_WORKDIR, frame_size, log

WARMUP = (56, 56)


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _measure(text_path: str, mmproj_path: str, size: tuple[int, int], threads: int, conn) -> None:
    import time

    import omnimem_cpp as om
    from omnimem_cpp import media

    width, height = size
    rng = np.random.default_rng(0)
    with om.Model(text_path, mmproj=mmproj_path, n_threads=threads) as model, model.stream(n_ctx=64) as s:
        warm, grid = media.image_patches(rng.integers(0, 256, (WARMUP[1], WARMUP[0], 3), dtype=np.uint8))
        s.encode_image(warm, grid)
        patches, grid = media.image_patches(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        before = _peak_rss_bytes()
        t0 = time.perf_counter()
        s.encode_image(patches, grid)
        seconds = time.perf_counter() - t0
        conn.send({"size": f"{width}x{height}", "grid": list(grid), "patches": int(patches.shape[0]),
                   "peak_growth_bytes": _peak_rss_bytes() - before, "seconds": seconds})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="336x308,644x644", help="comma-separated WIDTHxHEIGHT stills")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", default=DEFAULT_WORKDIR, help="where the random GGUFs are cached")
    args = ap.parse_args()
    sizes = [frame_size(s) for s in args.sizes.split(",")]
    text_path = cached_text_gguf(args.workdir, QWEN25_OMNI_3B, "q8_0", 0, log=log)
    mmproj_path = cached_projector_gguf(args.workdir, QWEN25_OMNI_3B_PROJECTOR, 0, log=log)
    ctx = multiprocessing.get_context("spawn")
    print("| image | patch grid | patches | peak memory growth | per patch | seconds |\n|---|---|---|---|---|---|")
    for size in sizes:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_measure, args=(str(text_path), str(mmproj_path), size, args.threads, child))
        proc.start()
        r = parent.recv() if parent.poll(3600) else None
        proc.join()
        if r is None:
            print(f"| {size[0]}x{size[1]} | failed (exit code {proc.exitcode}) | | | | |")
            continue
        growth = r["peak_growth_bytes"]
        print(f"| {r['size']} | {tuple(r['grid'])} | {r['patches']} | {growth / 2**30:.3f} GiB | "
              f"{growth / r['patches'] / 2**10:.0f} KiB | {r['seconds']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
