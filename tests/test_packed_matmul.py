"""Our own matrix products on CPUs with AMX: Q8_0 and Q4_0 on a packed weight layout (AMX tiles for batches,
AVX-512 VNNI for single rows), F16 as stored (AVX-512). Used exactly on CPUs that have those instructions, and
giving ggml's results there."""

from __future__ import annotations

import pathlib

import gguf
import numpy as np
import pytest

import omnimem_cpp as om
import tiny_models

# What the packed kernels need, as Linux names the CPU flags.
KERNEL_FLAGS = {"avx512f", "avx512bw", "avx512_vnni", "f16c", "amx_tile", "amx_int8"}

MATMUL_WEIGHTS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def _cpu_flags() -> set[str]:
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


HAS_KERNELS = KERNEL_FLAGS <= _cpu_flags()


def _packable_bytes(path) -> int:
    """Bytes of the matrix-product weights our kernels take, read from the file itself: Q8_0 and Q4_0 with whole
    16-row panels, F16 with rows a multiple of 16 long."""
    total = 0
    for t in gguf.GGUFReader(str(path)).tensors:
        parts = t.name.split(".")
        is_weight = (parts[0] == "blk" and parts[2] in MATMUL_WEIGHTS) or t.name == "output.weight"
        if t.tensor_type in (gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_0):
            packable = int(t.shape[1]) % 16 == 0
        else:
            packable = t.tensor_type == gguf.GGMLQuantizationType.F16 and int(t.shape[0]) % 16 == 0
        if is_weight and packable:
            total += int(t.n_bytes)
    return total


@pytest.mark.parametrize("config, outtype", [("base", "q8_0"), ("base", "q4_0"), ("mha_tied", "q8_0"),
                                             ("odd_ffn", "q8_0"), ("base", "f16"), ("base", "f32")])
def test_weights_are_packed_exactly_on_cpus_with_the_kernels(tiny_gguf, config, outtype):
    path = tiny_gguf(config, outtype)
    with om.Model(path, n_threads=2) as model:
        packed = model.info.weights_packed_bytes
        expected = _packable_bytes(path) if HAS_KERNELS else 0
        assert packed == expected
        assert ("packed, AMX" in om.system_info()) == HAS_KERNELS
    with om.Model(path, n_threads=2, use_repack=False) as model:
        assert model.info.weights_packed_bytes == 0
    if HAS_KERNELS and outtype != "f32":
        assert expected > 0   # (mha_tied: the layers; its tied head, also the embedding table, is left to ggml)


# Max |logit difference| / max |float logit| of the quantized files (as test_interop_llamacpp measured them).
FLOAT_TOLERANCE = {"f16": 3e-3, "q8_0": 6e-2, "q4_0": 0.6}

# Batches of every size class: 1 row (VNNI), 2 to 75 rows (AMX tiles, padded to 32 rows).
BATCH_SIZES = [33, 1, 2, 17, 75, 1, 5, 32, 1, 40, 1, 3]


@pytest.mark.skipif(not HAS_KERNELS, reason="needs a CPU with AMX-INT8 and AVX-512 VNNI")
@pytest.mark.parametrize("config, outtype", [("base", "q8_0"), ("wide", "q8_0"), ("mha_tied", "q8_0"),
                                             ("odd_ffn", "q8_0"), ("base", "q4_0"), ("wide", "q4_0"),
                                             ("base", "f16"), ("odd_ffn", "f16")])
def test_packed_products_give_ggmls_results(tiny_gguf, tiny_reference, config, outtype):
    """Against ggml's kernels on the same file, a fresh stream per batch ("wide" has an odd number of 16-row
    panels: 48 rows in attn_k). Activations are quantized bit for bit as ggml does, and the block products
    are exact integers; only the float sums of the scaled blocks run in another order. That rarely matters,
    but when it tips one activation of the next layer to the other side of a rounding step, these tiny models
    (built to amplify such steps) move their logits by up to 1.4 % (measured), as any other change of
    summation order would; the float model says neither result is the better one."""
    path = tiny_gguf(config, outtype)
    ids = iter(range(10, 10 + sum(BATCH_SIZES)))
    batches = [[next(ids) for _ in range(n)] for n in BATCH_SIZES]

    def logits(use_repack):
        out = []
        with om.Model(path, n_threads=2, use_repack=use_repack) as model:
            assert (model.info.weights_packed_bytes > 0) == use_repack
            for batch in batches:
                with model.stream(kv_type="f32", n_ctx=256) as s:
                    s.feed_tokens(batch)
                    out.append(s.logits())
        return np.array(out)

    ggml, packed = logits(False), logits(True)
    rel = np.abs(packed - ggml).max(axis=1) / np.abs(ggml).max(axis=1)
    if outtype == "f16":
        # ggml's F16 product rounds the activations to fp16 first; ours multiplies them in float
        assert rel.max() <= FLOAT_TOLERANCE["f16"], rel
    else:
        assert np.count_nonzero(rel <= 1e-5) >= 0.75 * len(batches), rel   # measured: 1e-7 where nothing tips
        assert rel.max() <= 3e-2, rel
    # and both are as close to the float model
    model = tiny_reference(config)
    errors = {"ggml": [], "packed": []}
    for i, batch in enumerate(batches):
        reference = tiny_models.reference_logits(model, batch).numpy()[-1]
        for name, got in (("ggml", ggml[i]), ("packed", packed[i])):
            errors[name].append(np.abs(got - reference).max() / np.abs(reference).max())
    assert max(errors["ggml"]) <= FLOAT_TOLERANCE[outtype] and max(errors["packed"]) <= FLOAT_TOLERANCE[outtype]
    if outtype == "f16":
        assert np.mean(errors["packed"]) < np.mean(errors["ggml"]), errors   # float activations are the closer


@pytest.mark.skipif(not HAS_KERNELS, reason="needs a CPU with AMX-INT8 and AVX-512 VNNI")
def test_the_profile_counts_packed_products_as_matrix_products(tiny_gguf):
    """Stream.profile() shows a packed product as MUL_MAT with ggml's FLOP count, and its activation
    quantization apart."""
    path = tiny_gguf("base", "q8_0")
    profiles = {}
    for use_repack in (False, True):
        with om.Model(path, n_threads=2, use_repack=use_repack) as model:
            with model.stream(kv_type="f32", n_ctx=256) as s, s.profile() as p:
                s.feed_tokens(list(range(10, 50)))
            profiles[use_repack] = p
            n_layer = model.info.n_layer
    assert profiles[True]["MUL_MAT"].nodes == profiles[False]["MUL_MAT"].nodes
    assert profiles[True]["MUL_MAT"].flops == profiles[False]["MUL_MAT"].flops
    # batches quantize their activations in a node of their own: each layer's seven products but the last
    # layer's feed-forward ones and the head, which carry only the last row (one row is quantized in place)
    assert profiles[True]["QUANTIZE"].nodes == 7 * n_layer - 3
    assert all(op.op != "QUANTIZE" for op in profiles[False].ops)
