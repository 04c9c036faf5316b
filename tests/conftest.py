"""Shared fixtures: tiny random checkpoints, built once per test session and per distinct set of arguments."""

from __future__ import annotations

import pytest

import tiny_models


@pytest.fixture(scope="session")
def tiny_thinker(tmp_path_factory):
    """Factory: tiny_thinker(config="base", *, tokenizer=True, full_checkpoint=False, shards=1, seed=0) -> Path.

    Returns an HF checkpoint directory written by tiny_models.make_thinker; the same arguments give the same
    directory for the whole session, so treat it as read-only.
    """
    cache = {}
    defaults = dict(tokenizer=True, full_checkpoint=False, shards=1, seed=0)

    def make(config="base", **kw):
        kw = {**defaults, **kw}
        key = (config, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = tiny_models.make_thinker(tmp_path_factory.mktemp(f"hf-{config}"), config, **kw)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_gguf(tiny_thinker, tmp_path_factory):
    """Factory: tiny_gguf(config="base", outtype="f32", **make_thinker_kw) -> Path of a converted text GGUF."""
    from omnimem_cpp.convert import convert_checkpoint

    cache = {}

    def make(config="base", outtype="f32", **kw):
        key = (config, outtype, tuple(sorted(kw.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"gguf-{config}") / f"{config}-{outtype}.gguf"
            cache[key] = convert_checkpoint(tiny_thinker(config, **kw), out, outtype, progress=False)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_reference(tiny_thinker):
    """Factory: tiny_reference(config="base", seed=0) -> the float32 transformers thinker of that checkpoint."""
    cache = {}

    def make(config="base", seed=0):
        key = (config, seed)
        if key not in cache:
            cache[key] = tiny_models.load_thinker(tiny_thinker(config, seed=seed))
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_projector(tiny_thinker, tmp_path_factory):
    """The F32 multimodal projector (vision + audio towers) of the "base" tiny thinker."""
    from omnimem_cpp.convert import convert_projector

    out = tmp_path_factory.mktemp("mmproj") / "mmproj-f32.gguf"
    return convert_projector(tiny_thinker("base"), out, "f32", progress=False)


@pytest.fixture(scope="session")
def tiny_multimodal(tiny_gguf, tiny_projector):
    """The "base" tiny thinker loaded with its projector (F32 weights, 2 threads)."""
    import omnimem_cpp as om

    with om.Model(tiny_gguf("base", "f32"), mmproj=tiny_projector, n_threads=2) as model:
        yield model


@pytest.fixture(scope="session")
def tiny_multimodal_of(tiny_thinker, tiny_gguf, tmp_path_factory):
    """Factory: tiny_multimodal_of(config) -> that tiny thinker loaded with its F32 projector (2 threads), for
    encoder variants (tiny_models.ENCODER_CONFIGS); "base" is tiny_multimodal's."""
    import omnimem_cpp as om
    from omnimem_cpp.convert import convert_projector

    models = {}

    def make(config):
        if config not in models:
            out = tmp_path_factory.mktemp(f"mmproj-{config}") / "mmproj-f32.gguf"
            projector = convert_projector(tiny_thinker(config), out, "f32", progress=False)
            models[config] = om.Model(tiny_gguf(config, "f32"), mmproj=projector, n_threads=2)
        return models[config]

    yield make
    for model in models.values():
        model.close()
