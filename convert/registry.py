"""Which model family converts which Hugging Face `architectures` name.

A family is a module with ARCHITECTURES (the names it accepts) and plan_text(checkpoint) -> writer.Plan;
supporting another family means one module and one entry in FAMILIES. A family with multimodal encoders also
has a module with plan_projector(checkpoint) -> writer.Plan, listed in PROJECTORS.
"""

from __future__ import annotations

from types import ModuleType

from ..errors import ConversionError
from . import qwen25_omni, qwen25_omni_mmproj

FAMILIES: tuple[ModuleType, ...] = (qwen25_omni,)
PROJECTORS: dict[ModuleType, ModuleType] = {qwen25_omni: qwen25_omni_mmproj}

SUPPORTED_ARCHITECTURES = tuple(arch for family in FAMILIES for arch in family.ARCHITECTURES)


def family_for(config: dict) -> ModuleType:
    """The family module for a parsed config.json."""
    names = config.get("architectures") or []
    for family in FAMILIES:
        if any(name in family.ARCHITECTURES for name in names):
            return family
    found = ", ".join(names) if names else "none (config.json has no 'architectures')"
    raise ConversionError(f"unsupported architecture {found}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}")

