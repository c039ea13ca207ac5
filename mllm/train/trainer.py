"""Glue around ``transformers.Trainer`` shared by every training stage.

The model computes its own loss on pre-shifted labels, so the stock Trainer loop needs no
override for SFT: only arguments, freezing, resume and the final save live here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from mllm.atomic import write_json
from mllm.data.collators import sft_collate
from mllm.distributed import world_size
from mllm.model.io import save_model
from mllm.model.lora import apply_lora
from mllm.model.mllm import MLLMModel

from .settings import TrainSettings

log = logging.getLogger(__name__)


def set_trainable_parts(model: MLLMModel, settings: TrainSettings) -> dict[str, int]:
    """Freeze/unfreeze vision tower, resampler and LLM as configured; returns trainable counts."""
    parts = {
        "vpm": settings.tune_vision,
        "resampler": settings.tune_resampler,
        "llm": settings.tune_llm,
    }
    for name, trainable in parts.items():
        getattr(model, name).requires_grad_(trainable)
    return {
        name: sum(p.numel() for p in getattr(model, name).parameters() if p.requires_grad)
        for name in parts
    }


def training_arguments(
    settings: TrainSettings, checkpoint_dir: str | os.PathLike, *, evaluate: bool
) -> TrainingArguments:
    periodic_eval = evaluate and settings.eval_steps > 0
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.per_device_batch_size,
        per_device_eval_batch_size=settings.eval_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler_type,
        warmup_steps=settings.warmup_ratio,
        weight_decay=settings.weight_decay,
        adam_beta2=settings.adam_beta2,
        max_grad_norm=settings.max_grad_norm,
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if periodic_eval else "no",
        eval_steps=settings.eval_steps if periodic_eval else None,
        save_strategy="steps" if settings.save_steps > 0 else "no",
        save_steps=settings.save_steps if settings.save_steps > 0 else 500,
        save_total_limit=2,
        seed=settings.seed,
        data_seed=settings.seed,
        bf16=settings.bf16,
        gradient_checkpointing=settings.gradient_checkpointing,
        deepspeed=settings.deepspeed,
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        prediction_loss_only=True,
        disable_tqdm=False,
        # torchrun ranks on a machine without CUDA (tests, CPU nodes) talk over gloo, not NCCL.
        ddp_backend="gloo" if world_size() > 1 and not torch.cuda.is_available() else None,
    )


def refuse_sharded_weights(deepspeed_config: str | None) -> None:
    """ZeRO-3 leaves each rank a shard of the weights, and ``train`` saves rank 0's model: the
    result would be a partial checkpoint. Fail before training instead of after it."""
    if deepspeed_config is None:
        return
    stage = json.loads(Path(deepspeed_config).read_text()).get("zero_optimization", {}).get("stage")
    if stage == 3:
        raise ValueError(
            f"{deepspeed_config}: ZeRO-3 shards the weights across ranks and only rank 0 saves the "
            "model; use ZeRO-2 (config/deepspeed/zero2.json)"
        )


def run_fingerprint(settings: TrainSettings, model: MLLMModel, train_dataset: Dataset) -> str:
    """What a checkpoint must have been trained on to be resumed: the settings, the starting
    weights and the training data. A checkpoint left by a run with other inputs is never resumed."""
    digest = hashlib.sha256(
        json.dumps(dataclasses.asdict(settings), sort_keys=True, default=str).encode()
    )
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(
            tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        )
    digest.update(
        json.dumps(
            getattr(train_dataset, "records", len(train_dataset)), sort_keys=True, default=str
        ).encode()
    )
    return digest.hexdigest()


# What ``Trainer._save_checkpoint`` writes, in order: the weights (one of these), the optimizer and
# scheduler (DeepSpeed: its own folder, indexed by ``latest``), the RNG states, trainer_state.json.
_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "adapter_model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.bin",
)
_CHECKPOINT = re.compile(rf"{PREFIX_CHECKPOINT_DIR}-(\d+)")


def _step(checkpoint: Path) -> int:
    return int(_CHECKPOINT.fullmatch(checkpoint.name).group(1))


def checkpoint_problem(checkpoint: Path) -> str | None:
    """What a checkpoint folder lacks to be resumed (None: it is complete). A kill while the
    Trainer writes one leaves a folder with only the files written before it."""
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return "no readable trainer_state.json"
    step = _step(checkpoint)
    if not isinstance(state, dict) or state.get("global_step") != step:
        return f"trainer_state.json is not the state at step {step}"
    if not any((checkpoint / name).is_file() for name in _WEIGHTS):
        return "no model weights"
    optimizer = all((checkpoint / name).is_file() for name in ("optimizer.pt", "scheduler.pt"))
    if not optimizer and not (checkpoint / "latest").is_file():
        return "no optimizer and scheduler state"
    if not any(checkpoint.glob("rng_state*.pth")):
        return "no RNG state"
    return None


def resumable_checkpoint(checkpoint_dir: str | os.PathLike, fingerprint: str) -> str | None:
    """The newest complete checkpoint of *this* run, if any; checkpoints of another run, and
    incomplete ones (a kill while one was written), are deleted.

    Under torchrun the main process runs this first (``main_process_first``): the other ranks
    then find its marker and only look the checkpoint up.
    """
    checkpoint_dir = Path(checkpoint_dir)
    marker = checkpoint_dir / "run-fingerprint.txt"
    if not marker.exists() or marker.read_text().strip() != fingerprint:
        if checkpoint_dir.is_dir():
            log.warning(
                "discarding checkpoints in %s: they belong to a run with other inputs",
                checkpoint_dir,
            )
            shutil.rmtree(checkpoint_dir)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(fingerprint + "\n")
    checkpoints = sorted(
        (p for p in checkpoint_dir.iterdir() if p.is_dir() and _CHECKPOINT.fullmatch(p.name)),
        key=_step,
        reverse=True,
    )
    for checkpoint in checkpoints:
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return str(checkpoint)
        log.warning(
            "removing incomplete checkpoint %s (%s): the run was stopped while writing it",
            checkpoint,
            problem,
        )
        shutil.rmtree(checkpoint)
    return None


def train(
    model: MLLMModel,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: Dataset,
    eval_dataset: Dataset | None,
    settings: TrainSettings,
    *,
    model_dir: str | os.PathLike,
    checkpoint_dir: str | os.PathLike,
    state_path: str | os.PathLike,
    metrics_path: str | os.PathLike,
    collate: Callable | None = None,
    trainer_class: type[Trainer] = Trainer,
    trainer_kwargs: dict | None = None,
) -> dict:
    """Train, resuming from the newest checkpoint in ``checkpoint_dir`` if one exists, then write the
    final (LoRA-merged) model to ``model_dir`` and the Trainer state and metrics beside it, and
    remove the checkpoints.

    ``checkpoint_dir`` lies outside the rule's declared outputs: Snakemake deletes outputs before a
    job starts, and a killed job must find its checkpoints on rerun.
    """
    refuse_sharded_weights(settings.deepspeed)
    set_seed(settings.seed)
    fingerprint = run_fingerprint(settings, model, train_dataset)
    trainable = set_trainable_parts(model, settings)
    if settings.lora is not None:
        model = apply_lora(model, settings.lora)
    if settings.gradient_checkpointing:
        model.enable_input_require_grads()
    collate = collate or partial(
        sft_collate, max_length=settings.max_length, pad_token_id=tokenizer.pad_token_id or 0
    )
    trainer = trainer_class(
        model=model,
        args=training_arguments(settings, checkpoint_dir, evaluate=eval_dataset is not None),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collate,
        **(trainer_kwargs or {}),
    )
    # The starting model's eval loss, measured in the same job so "before vs after" is one artifact.
    eval_loss_before = trainer.evaluate()["eval_loss"] if eval_dataset is not None else None
    with trainer.args.main_process_first(local=False, desc="checkpoint lookup"):
        last_checkpoint = resumable_checkpoint(checkpoint_dir, fingerprint)
    if last_checkpoint:
        log.info("resuming from %s", last_checkpoint)
    result = trainer.train(resume_from_checkpoint=last_checkpoint)
    metrics = {
        "train_loss": result.training_loss,
        "global_step": trainer.state.global_step,
        "world_size": trainer.args.world_size,  # processes (GPUs): global batch = per-device × this
        "resumed_from": Path(last_checkpoint).name if last_checkpoint else None,
        "trainable_parameters": trainable
        if settings.lora is None
        else {
            "lora_and_saved_modules": sum(p.numel() for p in model.parameters() if p.requires_grad)
        },
    }
    if eval_dataset is not None:
        metrics["eval_loss_before"] = eval_loss_before
        metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
    if trainer.is_world_process_zero():  # every rank holds the same weights; one writes them
        final = model.merge_and_unload() if settings.lora is not None else model
        save_model(final, tokenizer, model_dir)
        trainer.state.save_to_json(str(state_path))
        write_json(metrics_path, metrics)
        # Checkpoints only serve a killed run. Once the outputs exist they are dead weight (GBs for
        # a real model), and resuming a *finished* run would make the Trainer take extra steps.
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return metrics
