"""Preference alignment (exercise task 3): one DPO / NCA run from the starting model against the
reference log-probs that ``mllm.preference.reference`` cached. The job, run by the workflow as

    python -m mllm.preference.train train_preference --threads N --spec JSON NAME=PATH ...

(or under ``python -m torch.distributed.run ... -m mllm.preference.train``; see ``mllm.launch``).
"""

from __future__ import annotations

import os
from functools import partial

from mllm.family.registry import load_model
from mllm.launch import main
from mllm.train.settings import TrainSettings
from mllm.train.trainer import train

from .dataset import PreferenceDataset, collate_preference_pairs
from .reference_cache import load_reference_logps, loaded_model_cache_key
from .settings import PreferenceSettings
from .trainer import PreferenceTrainer


def train_preference(
    *,
    start_model_dir: str | os.PathLike,
    reference_path: str | os.PathLike,
    data_file: str | os.PathLike,
    image_folder: str | os.PathLike | None = None,
    preference: PreferenceSettings,
    settings: TrainSettings,
    model_dir: str | os.PathLike,
    checkpoint_dir: str | os.PathLike,
    state_path: str | os.PathLike,
    metrics_path: str | os.PathLike,
) -> dict:
    """One loss × β run from the starting model; refuses a reference cache made from other inputs."""
    loaded = load_model(start_model_dir, device="cpu")
    dataset = PreferenceDataset.from_file(
        data_file,
        loaded,
        max_length=settings.max_length,
        image_folder=image_folder,
        on_bad_record=preference.on_bad_record,
    )
    key = loaded_model_cache_key(
        loaded,
        model_dir=start_model_dir,
        data_path=data_file,
        image_folder=image_folder,
        max_length=settings.max_length,
    )
    reference = load_reference_logps(reference_path, key)
    return train(
        loaded,
        dataset,
        None,
        settings,
        model_dir=model_dir,
        checkpoint_dir=checkpoint_dir,
        state_path=state_path,
        metrics_path=metrics_path,
        job=__spec__.name,  # this module's name, also under ``python -m``
        job_inputs={"preference": preference, "reference_logps": key.digest},
        collate=partial(collate_preference_pairs, collate=partial(loaded.family.collate, loaded)),
        trainer_class=PreferenceTrainer,
        trainer_kwargs={"reference_logps": reference, "preference": preference},
    )


if __name__ == "__main__":
    main([train_preference])
