"""Training hyperparameters as one typed, validated object built from a config section.

Every field reaches its Snakemake rule through the job's spec, so changing one reruns exactly the
stages that depend on it; missing keys take the defaults below, unknown keys fail loudly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mllm.model.lora import LoraSettings
from mllm.settings import Settings, reject_unknown_keys


@dataclass(frozen=True)
class TrainSettings(Settings):
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
    # SFT samples longer than max_length lose the end of their answer; more than this share of a
    # data set is refused (a few outliers of real data are cut, a max_length too small is not).
    max_truncated_share: float = 0.05
    bf16: bool = False
    gradient_checkpointing: bool = False
    deepspeed: str | None = None  # a DeepSpeed JSON (config/deepspeed/zero2.json, zero3.json)
    fsdp: str | None = None  # an FSDP2 config JSON (config/fsdp/fsdp2.json); not with deepspeed
    tune_vision: bool = False
    tune_resampler: bool = True
    tune_llm: bool = True
    lora: LoraSettings | None = None
    eval_batch_size: int = 8
    extra: dict[str, Any] = field(default_factory=dict)  # not a config key: from_dict rejects it

    def __post_init__(self):
        # TrainingArguments takes it as warmup_steps, which it reads as a ratio only below 1.
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(
                f"warmup_ratio must be in [0, 1) (a share of max_steps), got {self.warmup_ratio}"
            )
        if not 0 <= self.max_truncated_share <= 1:
            raise ValueError(
                f"max_truncated_share must be in [0, 1], got {self.max_truncated_share}"
            )

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any] | None, *, where: str | None = None
    ) -> TrainSettings:
        """From a config ``training`` section; ``lora`` null or false (or left out) is no LoRA."""
        where = where or cls.__name__
        values = dict(values or {})
        reject_unknown_keys(values, {f.name for f in dataclasses.fields(cls)} - {"extra"}, where)
        lora = values.pop("lora", None)
        if lora is not None and lora is not False:
            values["lora"] = LoraSettings.from_dict(lora, where=f"{where}: lora")
        return cls(**values)
