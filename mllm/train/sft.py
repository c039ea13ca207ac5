"""Supervised fine-tuning (exercise task 2): LoRA or full, from any stage's model directory."""

from __future__ import annotations

import os

from mllm.model.io import load_model

from .datasets import SupervisedDataset
from .settings import TrainSettings
from .trainer import train


def train_sft(
    *,
    start_model_dir: str | os.PathLike,
    train_file: str | os.PathLike,
    eval_file: str | os.PathLike | None,
    image_folder: str | os.PathLike | None,
    settings: TrainSettings,
    model_dir: str | os.PathLike,
    checkpoint_dir: str | os.PathLike,
    state_path: str | os.PathLike,
    metrics_path: str | os.PathLike,
) -> dict:
    """Fine-tune on ``{id, image, conversations}`` records; every record is validated before the
    first step, so bad data fails fast and leaves no model directory behind."""
    loaded = load_model(start_model_dir, attn_implementation="sdpa", device="cpu")

    def dataset(path):
        return SupervisedDataset.from_file(
            path,
            loaded.tokenizer,
            loaded.image_processor,
            query_num=loaded.model.config.query_num,
            max_length=settings.max_length,
            image_folder=image_folder,
        )

    return train(
        loaded.model,
        loaded.tokenizer,
        dataset(train_file),
        dataset(eval_file) if eval_file is not None else None,
        settings,
        model_dir=model_dir,
        checkpoint_dir=checkpoint_dir,
        state_path=state_path,
        metrics_path=metrics_path,
    )
