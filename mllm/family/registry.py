"""Which family a config names or a checkpoint is, and the one loader every stage calls.

``FAMILIES`` is a plain dict of classes imported at the top, so the code-input closure
(``mllm.workflow.code_inputs``) sees every family a stage may load. Adding a family is one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .base import LoadedModel, ModelFamily
from .hf import (
    Idefics3Family,
    InternVLFamily,
    LlavaOnevisionFamily,
    Qwen2_5_VLFamily,
    Qwen3VLFamily,
    SmolVLMFamily,
)
from .own import OwnFamily

FAMILIES: dict[str, type[ModelFamily]] = {
    OwnFamily.name: OwnFamily,
    Qwen2_5_VLFamily.name: Qwen2_5_VLFamily,
    Qwen3VLFamily.name: Qwen3VLFamily,
    InternVLFamily.name: InternVLFamily,
    LlavaOnevisionFamily.name: LlavaOnevisionFamily,
    Idefics3Family.name: Idefics3Family,
    SmolVLMFamily.name: SmolVLMFamily,
}


class UnknownFamilyError(ValueError):
    """A family name or checkpoint ``model_type`` no registered family handles."""


def family_named(name: str) -> ModelFamily:
    """The family a config's ``model.family`` names."""
    if name not in FAMILIES:
        raise UnknownFamilyError(
            f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}"
        )
    return FAMILIES[name]()


def model_type_of(model_dir: str | os.PathLike) -> str:
    """The ``model_type`` of a checkpoint folder's ``config.json``."""
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{model_dir} is not a model directory (no config.json)")
    try:
        model_type = json.loads(config_path.read_text()).get("model_type")
    except (ValueError, AttributeError) as error:
        raise UnknownFamilyError(f"{config_path}: not a JSON object ({error})") from error
    if not isinstance(model_type, str):
        raise UnknownFamilyError(f"{config_path}: no 'model_type' string")
    return model_type


def family_of(model_dir: str | os.PathLike) -> ModelFamily:
    """The family of the checkpoint in ``model_dir``, by its ``config.json`` ``model_type``."""
    model_type = model_type_of(model_dir)
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family()
    known = sorted(t for family in FAMILIES.values() for t in family.model_types)
    raise UnknownFamilyError(
        f"{model_dir}: config.json model_type {model_type!r} belongs to no known model family "
        f"(known model types: {', '.join(known)})"
    )


def load_model(model_dir: str | os.PathLike, **options) -> LoadedModel:
    """Load a checkpoint with its own family: what every stage calls. ``options``: the family's
    ``load`` keyword arguments (dtype, attn_implementation, device, trust_remote_code)."""
    return family_of(model_dir).load(model_dir, **options)
