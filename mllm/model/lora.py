"""LoRA on the LLM's attention projections only.

A plain ``target_modules=["q_proj", "v_proj"]`` also hits the vision tower's modules of the same name;
a regex anchored on the ``llm.`` path keeps the adapters where the exercise puts them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from mllm.settings import Settings

DEFAULT_TARGET_REGEX = r"llm\..*layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj)"


@dataclass(frozen=True)
class LoraSettings(Settings):
    """The exercise's defaults: r 64, α 64, dropout .05, q/k/v of every LLM layer."""

    r: int = 64
    alpha: int = 64
    dropout: float = 0.05
    target_regex: str = DEFAULT_TARGET_REGEX
    modules_to_save: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        object.__setattr__(self, "modules_to_save", tuple(self.modules_to_save))  # YAML: a list


def lora_target_names(model: nn.Module, target_regex: str) -> list[str]:
    """Module names the regex selects (full match, as PEFT applies it)."""
    pattern = re.compile(target_regex)
    return [name for name, _ in model.named_modules() if pattern.fullmatch(name)]


def apply_lora(model: nn.Module, settings: LoraSettings) -> PeftModel:
    """Wrap ``model`` with LoRA adapters; fails loudly if the regex selects nothing."""
    if not lora_target_names(model, settings.target_regex):
        raise ValueError(
            f"LoRA target regex {settings.target_regex!r} matches no module of the model"
        )
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_regex,
        modules_to_save=list(settings.modules_to_save) or None,
        bias="none",
    )
    return get_peft_model(model, config)
