"""Glue around ``transformers.Trainer`` shared by every training stage.

The SFT loss is computed here from the logits and the pre-shifted labels (``SupervisedTrainer``),
never by handing labels to the model (an HF model would shift them a second time); arguments,
freezing, resume and the final save (through the model's family) live here too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
from transformers import (
    PreTrainedTokenizerBase,
    Trainer,
    TrainerState,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from mllm.atomic import write_json
from mllm.data.collators import sft_collate
from mllm.distributed import batch_geometry, world_size
from mllm.family.base import LoadedModel, ModelFamily
from mllm.hashing import update_with_file
from mllm.model.llm import supervised_token_loss
from mllm.model.lora import apply_lora
from mllm.workflow.code_inputs import code_inputs

from .checkpoint_lock import exclusive_checkpoints
from .datasets import PreprocessedDataset
from .settings import TrainSettings
from .sharded_save import check_sharding, save_whole_model

log = logging.getLogger(__name__)
REPOSITORY = Path(__file__).resolve().parents[2]  # the folder above the mllm package


def set_trainable_parts(
    family: ModelFamily, model: torch.nn.Module, settings: TrainSettings
) -> dict[str, int]:
    """Freeze/unfreeze vision tower, projector and LLM as configured; returns trainable counts by
    module name."""
    tuned = {
        "vision": settings.tune_vision,
        "projector": settings.tune_resampler,
        "llm": settings.tune_llm,
    }
    parts = family.model_parts(model)
    for role, (_, module) in parts.items():
        module.requires_grad_(tuned[role])
    return {
        name: sum(p.numel() for p in module.parameters() if p.requires_grad)
        for name, module in parts.values()
    }


class SupervisedTrainer(Trainer):
    """The stock loop with the SFT loss: token cross-entropy of the family's
    ``supervised_logits`` against the pre-shifted labels, summed over the batch and divided by
    the Trainer's count of supervised tokens in the whole accumulated batch (every token weighs
    the same under gradient accumulation and across ranks)."""

    def __init__(self, *args, family: ModelFamily, **kwargs):
        super().__init__(*args, **kwargs)
        self.family = family
        # The loss below takes the token count, whatever the model's forward accepts: have the
        # Trainer count it and not divide again by the accumulation steps.
        self.model_accepts_loss_kwargs = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")  # [B, L] pre-shifted
        logits, targets = self.family.supervised_logits(model, inputs, labels)
        loss = supervised_token_loss(logits, targets, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # The count covers every rank's tokens and DDP averages the gradients: scale back
            # (the Trainer's own compute_loss does the same).
            processes = self.accelerator.num_processes // self.get_tp_size()
            loss = loss * (processes if self.args.n_gpu <= 1 else self.args.n_gpu)
        return (loss, {"logits": logits}) if return_outputs else loss


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
        # The starting model's eval loss, inside train(): an evaluate() before it would wrap the
        # model for inference, and DeepSpeed then never sets up its training engine.
        eval_on_start=evaluate,
        eval_steps=settings.eval_steps if periodic_eval else None,
        save_strategy="steps" if settings.save_steps > 0 else "no",
        save_steps=settings.save_steps if settings.save_steps > 0 else 500,
        save_total_limit=2,
        seed=settings.seed,
        data_seed=settings.seed,
        bf16=settings.bf16,
        gradient_checkpointing=settings.gradient_checkpointing,
        deepspeed=settings.deepspeed,
        fsdp=True if settings.fsdp is not None else None,  # FSDP2, set up by the fsdp_config file
        fsdp_config=settings.fsdp,
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        prediction_loss_only=True,
        disable_tqdm=False,
        # torchrun ranks on a machine without CUDA (tests, CPU nodes) talk over gloo, not NCCL;
        # without use_cpu, Accelerate takes them for independent single processes (no DDP).
        # DeepSpeed sets up its own (CPU) accelerator, which use_cpu would bypass.
        use_cpu=not torch.cuda.is_available() and settings.deepspeed is None,
        ddp_backend="gloo" if world_size() > 1 and not torch.cuda.is_available() else None,
    )


def run_fingerprint(
    settings: TrainSettings,
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: PreprocessedDataset,
    *,
    job: str,
    job_inputs: Mapping[str, Any] | None = None,
    repository: str | os.PathLike = REPOSITORY,
) -> dict[str, str]:
    """What a checkpoint must have been trained with to be resumed, as a sha256 per component:
    every training setting; the job's other settings and inputs (``job_inputs``, e.g. the loss
    settings); the starting model (weights, config and tokenizer); the training records and the
    image files they name; and the code, the library files the job module ``job`` imports (its
    import closure under ``repository``). A checkpoint left by a run that differs in any is never
    resumed."""
    start_model = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        start_model.update(name.encode())
        start_model.update(
            tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        )
    config = {
        k: v
        for k, v in model.config.to_dict().items()
        if k not in ("_name_or_path", "transformers_version")
    }
    start_model.update(_hash_json(config).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)  # fast tokenizers: the whole pipeline
    vocabulary = backend.to_str() if backend is not None else tokenizer.get_vocab()
    start_model.update(_hash_json([vocabulary, tokenizer.chat_template]).encode())
    data = hashlib.sha256(_hash_json(train_dataset.records).encode())
    for ref, path in sorted(train_dataset.image_files().items()):
        data.update(ref.encode() + b"\0")
        if path.is_file():
            update_with_file(data, path)
        else:  # a missing image as a marker: the dataset reports it
            data.update(b"<missing>")
    code = hashlib.sha256()
    for path in map(Path, code_inputs(job, repository)):
        code.update(path.relative_to(Path(repository).resolve()).as_posix().encode() + b"\0")
        update_with_file(code, path)
    return {
        "settings": _hash_json(settings),
        "job_inputs": _hash_json(job_inputs or {}),
        "start_model": start_model.hexdigest(),
        "data": data.hexdigest(),
        "code": code.hexdigest(),
    }


def _hash_json(value: Any) -> str:
    """sha256 of ``value`` as JSON; settings dataclasses (nested too) as their fields."""

    def plain(item: Any) -> Any:
        return dataclasses.asdict(item) if dataclasses.is_dataclass(item) else str(item)

    return hashlib.sha256(json.dumps(value, sort_keys=True, default=plain).encode()).hexdigest()


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


def resumable_checkpoint(
    checkpoint_dir: str | os.PathLike, fingerprint: Mapping[str, str]
) -> str | None:
    """The newest complete checkpoint of *this* run (``fingerprint``), if any; checkpoints of a
    run with other inputs, and incomplete ones (a kill while one was written), are deleted.

    Under torchrun the main process runs this first (``main_process_first``): the other ranks
    then find its marker and only look the checkpoint up.
    """
    checkpoint_dir = Path(checkpoint_dir)
    marker = checkpoint_dir / "run-fingerprint.json"
    try:
        written_by = json.loads(marker.read_text())
    except (OSError, ValueError):
        written_by = None
    if written_by != dict(fingerprint):
        if checkpoint_dir.is_dir():
            changed = (
                sorted(name for name in fingerprint if written_by.get(name) != fingerprint[name])
                if isinstance(written_by, dict)
                else ["inputs (no readable run-fingerprint.json)"]
            )
            log.warning(
                "discarding the checkpoints in %s: written by a run with other %s",
                checkpoint_dir,
                ", ".join(changed),
            )
            shutil.rmtree(checkpoint_dir)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(dict(fingerprint), indent=1, sort_keys=True) + "\n")
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


def whole_run_train_loss(state: TrainerState, resumed_step: int, resumed_loss: float) -> float:
    """The mean training loss over every step of a run resumed at ``resumed_step``.

    The Trainer's ``training_loss`` averages only the steps after the resume (0.0 when the run
    resumed from its last checkpoint). The earlier steps' losses come from the log history the
    checkpoint carries: each logged loss is the mean since the previous logging step. Exact when
    the checkpoint was written at a logging step; otherwise the steps between its last logging
    step and the checkpoint are left out (their losses were never logged).
    """
    logged, covered = 0.0, 0
    for entry in state.log_history:
        if "loss" in entry and covered < entry["step"] <= resumed_step:
            logged += entry["loss"] * (entry["step"] - covered)
            covered = entry["step"]
    steps_after = state.global_step - resumed_step
    return (logged + resumed_loss * steps_after) / max(covered + steps_after, 1)


def train(
    loaded: LoadedModel,
    train_dataset: PreprocessedDataset,
    eval_dataset: PreprocessedDataset | None,
    settings: TrainSettings,
    *,
    model_dir: str | os.PathLike,
    checkpoint_dir: str | os.PathLike,
    state_path: str | os.PathLike,
    metrics_path: str | os.PathLike,
    job: str,
    job_inputs: Mapping[str, Any] | None = None,
    collate: Callable | None = None,
    trainer_class: type[Trainer] | None = None,
    trainer_kwargs: dict | None = None,
) -> dict:
    """Train ``loaded``'s model, resuming from the newest checkpoint in ``checkpoint_dir`` if one exists, then write the
    final (LoRA-merged) model to ``model_dir`` and the Trainer state and metrics beside it, and
    remove the checkpoints.

    ``checkpoint_dir`` lies outside the rule's declared outputs: Snakemake deletes outputs before a
    job starts, and a killed job must find its checkpoints on rerun. A checkpoint is resumed only
    by the same run: ``job`` (the job's module) and ``job_inputs`` (its settings and inputs besides
    ``settings``, the starting model and the data) complete its ``run_fingerprint``. A second job
    on the same ``checkpoint_dir`` while this one runs is refused (``CheckpointsInUse``).
    """
    with exclusive_checkpoints(checkpoint_dir, job):  # one trainer per checkpoint folder
        check_sharding(settings.deepspeed, settings.fsdp)
        set_seed(settings.seed)
        model, family = loaded.model, loaded.family
        fingerprint = run_fingerprint(
            settings, model, loaded.tokenizer, train_dataset, job=job, job_inputs=job_inputs
        )
        trainable = set_trainable_parts(family, model, settings)
        if settings.lora is not None:
            model = apply_lora(model, settings.lora, default_regex=family.lora_target_regex)
        if settings.gradient_checkpointing:
            model.enable_input_require_grads()
        collate = collate or partial(
            sft_collate, collate=partial(family.collate, loaded), max_length=settings.max_length
        )
        if trainer_class is None:
            trainer_class, trainer_kwargs = (
                SupervisedTrainer,
                {"family": family, **(trainer_kwargs or {})},
            )
        trainer = trainer_class(
            model=model,
            args=training_arguments(settings, checkpoint_dir, evaluate=eval_dataset is not None),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=collate,
            **(trainer_kwargs or {}),
        )
        with trainer.args.main_process_first(local=False, desc="checkpoint lookup"):
            last_checkpoint = resumable_checkpoint(checkpoint_dir, fingerprint)
        if last_checkpoint:
            log.info("resuming from %s", last_checkpoint)
        result = trainer.train(resume_from_checkpoint=last_checkpoint)
        train_loss = result.training_loss  # an uninterrupted run's: the Trainer's own mean
        if last_checkpoint:
            train_loss = whole_run_train_loss(
                trainer.state, _step(Path(last_checkpoint)), train_loss
            )
        metrics = {
            "train_loss": train_loss,
            "global_step": trainer.state.global_step,
            **batch_geometry(settings.per_device_batch_size, settings.gradient_accumulation_steps),
            "resumed_from": Path(last_checkpoint).name if last_checkpoint else None,
            "trainable_parameters": trainable
            if settings.lora is None
            else {
                "lora_and_saved_modules": sum(
                    p.numel() for p in model.parameters() if p.requires_grad
                )
            },
        }
        if eval_dataset is not None:
            # The starting model's (eval_on_start, step 0; a resumed run's history carries it),
            # measured in the same job so "before vs after" is one artifact.
            metrics["eval_loss_before"] = next(
                e["eval_loss"]
                for e in trainer.state.log_history
                if "eval_loss" in e and e["step"] == 0
            )
            metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
        save_whole_model(trainer, model, loaded, model_dir, settings.lora)  # rank 0 writes it
        if trainer.is_world_process_zero():
            trainer.state.save_to_json(str(state_path))
            write_json(metrics_path, metrics)
            # Checkpoints only serve a killed run. Once the outputs exist they are dead weight (GBs for
            # a real model), and resuming a *finished* run would make the Trainer take extra steps.
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
        return metrics
