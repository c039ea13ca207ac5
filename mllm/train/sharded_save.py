"""Whole-model saves from sharded training: DeepSpeed ZeRO-3 and FSDP2 leave every rank a slice
of each weight, so rank 0's module alone is no model. Every rank takes part in gathering the
full state dict (ZeRO-3: its 16-bit gather, through Accelerate; FSDP2: torch's full state dict
of the DTensor parameters), and rank 0 loads it into an unsharded copy of the model, merges LoRA
as for unsharded runs, and writes one ordinary ``save_pretrained`` folder that
``from_pretrained`` loads.

ZeRO-1/2 and DDP keep whole weights on every rank: rank 0 saves its own module, as before.
Accelerate shards with FSDP only on accelerators (GPUs): on CPU ranks it would silently train
plain DDP, so an FSDP config is refused there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.tensor import DTensor
from transformers import PreTrainedModel, Trainer

from mllm.family.base import LoadedModel
from mllm.model.lora import LoraSettings, apply_lora

GATHER_ON_SAVE = "stage3_gather_16bit_weights_on_model_save"


def zero_stage(deepspeed_config: str | os.PathLike | None) -> int | None:
    if deepspeed_config is None:
        return None
    return json.loads(Path(deepspeed_config).read_text()).get("zero_optimization", {}).get("stage")


def check_sharding(deepspeed_config: str | None, fsdp_config: str | None) -> None:
    """Fail before training on a set-up that would not shard as asked, or whose final save could
    not gather the whole model."""
    if deepspeed_config is not None and fsdp_config is not None:
        raise ValueError(
            f"training sets both deepspeed ({deepspeed_config}) and fsdp ({fsdp_config}); "
            "choose one (docs/cluster.md: ZeRO-3 or FSDP2)"
        )
    if fsdp_config is not None and not torch.cuda.is_available():
        raise ValueError(
            f"fsdp ({fsdp_config}) needs GPUs: Accelerate does not shard CPU ranks and would "
            "train plain DDP instead"
        )
    if zero_stage(deepspeed_config) == 3:
        zero = json.loads(Path(deepspeed_config).read_text())["zero_optimization"]
        if zero.get(GATHER_ON_SAVE) is not True:
            raise ValueError(
                f"{deepspeed_config}: ZeRO-3 shards the weights across ranks; set "
                f"zero_optimization.{GATHER_ON_SAVE}: true so the final save gathers the whole "
                "model (config/deepspeed/zero3.json does)"
            )


def is_fsdp2_sharded(model: torch.nn.Module) -> bool:
    """FSDP2 (``fully_shard``) turns every parameter it shards into a DTensor."""
    return any(isinstance(p, DTensor) for p in model.parameters())


def full_state_dict(trainer: Trainer) -> dict[str, torch.Tensor] | None:
    """The whole weights, gathered with every rank taking part (call it on all ranks): on rank 0
    a CPU state dict, on the others unspecified; None when no rank lacks whole weights."""
    if is_fsdp2_sharded(trainer.model):
        return fsdp2_full_state_dict(trainer.model)
    if trainer.is_deepspeed_enabled and zero_stage(trainer.args.deepspeed) == 3:
        return trainer.accelerator.get_state_dict(trainer.model_wrapped)  # the 16-bit gather
    return None


def fsdp2_full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """All-gathers the DTensor shards of an FSDP2 model into plain CPU tensors."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def unsharded_copy(
    model: PreTrainedModel,
    state_dict: dict[str, torch.Tensor],
    lora: LoraSettings | None,
    *,
    lora_target_regex: str,
) -> PreTrainedModel:
    """A fresh CPU model of ``model``'s class and config holding the gathered ``state_dict`` (keys
    as the trained module names them: PEFT's when ``lora``), LoRA merged."""
    base = model.get_base_model() if lora is not None else model
    copy = type(base)(base.config)
    if lora is not None:
        copy = apply_lora(copy, lora, default_regex=lora_target_regex)
    copy.load_state_dict({name: tensor.to("cpu") for name, tensor in state_dict.items()})
    return copy.merge_and_unload() if lora is not None else copy


def save_whole_model(
    trainer: Trainer,
    model: PreTrainedModel,
    loaded: LoadedModel,
    model_dir: str | os.PathLike,
    lora: LoraSettings | None,
) -> None:
    """Called on every rank after training: rank 0 writes the final (LoRA-merged) model to
    ``model_dir``; under ZeRO-3 / FSDP every rank first joins the gather."""
    state_dict = full_state_dict(trainer)
    if state_dict is not None:
        if trainer.is_world_process_zero():
            regex = loaded.family.lora_target_regex
            copy = unsharded_copy(model, state_dict, lora, lora_target_regex=regex)
            loaded.family.save(loaded, copy, model_dir)
        trainer.accelerator.wait_for_everyone()
        return
    if trainer.is_world_process_zero():  # every rank holds the same weights; one writes them
        final = model.merge_and_unload() if lora is not None else model
        loaded.family.save(loaded, final, model_dir)
