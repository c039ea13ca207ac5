"""Supervised fine-tuning (exercise task 2): LoRA or full, from any stage's model directory.

The job function, run by the workflow as

    python -m mllm.train.sft train_sft --threads N --spec JSON NAME=PATH ...

(or under ``python -m torch.distributed.run ... -m mllm.train.sft``; see ``mllm.launch``).
"""

from __future__ import annotations

import os

from mllm.family.registry import load_model
from mllm.launch import main

from .datasets import SupervisedDataset
from .settings import TrainSettings
from .trainer import train


def train_sft(
    *,
    start_model_dir: str | os.PathLike,
    train_file: str | os.PathLike,
    eval_file: str | os.PathLike | None = None,
    image_folder: str | os.PathLike | None = None,
    settings: TrainSettings,
    model_dir: str | os.PathLike,
    checkpoint_dir: str | os.PathLike,
    state_path: str | os.PathLike,
    metrics_path: str | os.PathLike,
) -> dict:
    """Fine-tune on ``{id, image, conversations}`` records; every record is validated before the
    first step, so bad data fails fast and leaves no model directory behind."""
    loaded = load_model(start_model_dir, attn_implementation="sdpa", device="cpu")
    options = dict(
        max_length=settings.max_length,
        image_folder=image_folder,
        max_truncated_share=settings.max_truncated_share,
    )
    train_data = SupervisedDataset.from_file(train_file, loaded, **options)
    eval_data = (
        SupervisedDataset.from_file(eval_file, loaded, **options) if eval_file is not None else None
    )
    return train(
        loaded,
        train_data,
        eval_data,
        settings,
        model_dir=model_dir,
        checkpoint_dir=checkpoint_dir,
        state_path=state_path,
        metrics_path=metrics_path,
        job=__spec__.name,  # this module's name, also under ``python -m``
    )


if __name__ == "__main__":
    main([train_sft])
