"""Training hyperparameters as one typed, validated object built from a config dict.

Every field reaches its Snakemake rule through ``params:``, so changing one reruns exactly the
stages that depend on it; unknown keys fail loudly instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mllm.model.lora import DEFAULT_TARGET_REGEX, LoraSettings


def reject_unknown_keys(values: Mapping[str, Any], known: set[str], where: str) -> None:
    """A typo in a settings section fails loudly, naming the key and the known ones."""
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")


def settings_from_dict(cls, values: Mapping[str, Any] | None, where: str):
    """``cls(**values)`` for a settings dataclass, rejecting unknown keys."""
    values = dict(values or {})
    reject_unknown_keys(values, {f.name for f in dataclasses.fields(cls)}, where)
    return cls(**values)


@dataclass(frozen=True)
class TrainSettings:
    learning_rate: float = 1e-5
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.01
    weight_decay: float = 0.0
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    per_device_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    max_steps: int = 100
    eval_steps: int = 0  # 0 = no periodic evaluation
    save_steps: int = 50
    logging_steps: int = 10
    seed: int = 0
    max_length: int = 2048
    bf16: bool = False
    gradient_checkpointing: bool = False
    deepspeed: str | None = None
    tune_vision: bool = False
    tune_resampler: bool = True
    tune_llm: bool = True
    lora: LoraSettings | None = None
    eval_batch_size: int = 8
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any] | None, *, where: str = "training settings"
    ) -> TrainSettings:
        values = dict(values or {})
        reject_unknown_keys(values, {f.name for f in dataclasses.fields(cls)} - {"extra"}, where)
        lora = values.pop("lora", None)
        if lora is not None and lora is not False:
            lora = dict(lora)
            lora.setdefault("target_regex", DEFAULT_TARGET_REGEX)
            lora["modules_to_save"] = tuple(lora.get("modules_to_save", ()))
            values["lora"] = LoraSettings(**lora)
        return cls(**values)
