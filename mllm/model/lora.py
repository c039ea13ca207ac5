"""LoRA on the LLM's attention projections only.

A plain ``target_modules=["q_proj", "v_proj"]`` also hits the vision tower's modules of the same name;
a regex anchored on the language model's path keeps the adapters where the exercise puts them.
Each model family declares its own (``ModelFamily.lora_target_regex``); a config may override it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from mllm.settings import Settings


@dataclass(frozen=True)
class LoraSettings(Settings):
    """The exercise's defaults: r 64, α 64, dropout .05, q/k/v of every LLM layer (``target_regex``
    None: the model family's regex)."""

    r: int = 64
    alpha: int = 64
    dropout: float = 0.05
    target_regex: str | None = None
    modules_to_save: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        object.__setattr__(self, "modules_to_save", tuple(self.modules_to_save))  # YAML: a list


def lora_target_names(model: nn.Module, target_regex: str) -> list[str]:
    """Module names the regex selects (full match, as PEFT applies it)."""
    pattern = re.compile(target_regex)
    return [name for name, _ in model.named_modules() if pattern.fullmatch(name)]


def apply_lora(model: nn.Module, settings: LoraSettings, *, default_regex: str) -> PeftModel:
    """Wrap ``model`` with LoRA adapters on ``settings.target_regex``, else ``default_regex`` (the
    family's); fails loudly if the regex selects nothing."""
    target_regex = settings.target_regex if settings.target_regex is not None else default_regex
    if not lora_target_names(model, target_regex):
        raise ValueError(f"LoRA target regex {target_regex!r} matches no module of the model")
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=target_regex,
        modules_to_save=list(settings.modules_to_save) or None,
        bias="none",
    )
    return get_peft_model(model, config)
