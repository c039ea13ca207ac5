"""Preference alignment stage (exercise task 3): reference log-probs once, then DPO / NCA runs
that reuse them. Thin orchestration over ``preference``, ``reference_cache`` and ``trainer``."""

from __future__ import annotations

import os
from functools import partial

from mllm import distributed
from mllm.atomic import write_json
from mllm.model.io import LoadedModel, load_model

from .datasets import read_json_records
from .preference import (
    PreferenceDataset,
    PreferenceSettings,
    PreferenceTrainer,
    collate_preference_pairs,
)
from .reference_cache import (
    load_reference_logps,
    merge_reference_logps,
    reference_cache_key,
    save_reference_logps,
    score_reference,
)
from .settings import TrainSettings
from .trainer import train


def preference_dataset(
    loaded: LoadedModel,
    data_file: str | os.PathLike,
    image_folder,
    *,
    max_length: int,
    on_bad_record: str,
) -> PreferenceDataset:
    return PreferenceDataset(
        read_json_records(data_file),
        loaded.tokenizer,
        loaded.image_processor,
        query_num=loaded.model.config.query_num,
        max_length=max_length,
        image_folder=str(image_folder) if image_folder is not None else None,
        on_bad_record=on_bad_record,
        source=str(data_file),
    )


def cache_key(loaded: LoadedModel, model_dir, data_file, image_folder, max_length: int):
    return reference_cache_key(
        model_dir=model_dir,
        data_path=data_file,
        tokenizer=loaded.tokenizer,
        image_processor=loaded.image_processor,
        query_num=loaded.model.config.query_num,
        max_length=max_length,
        image_folder=image_folder,
    )


def build_reference_logps(
    *,
    model_dir: str | os.PathLike,
    data_file: str | os.PathLike,
    image_folder: str | os.PathLike | None,
    max_length: int,
    batch_size: int,
    on_bad_record: str,
    output_path: str | os.PathLike,
    summary_path: str | os.PathLike,
) -> dict | None:
    """Score every pair with the reference (= starting) model and cache the result with its key.

    Under torchrun each rank scores a strided share of the batches on its own device; rank 0
    gathers the shares and alone writes the cache (the same bytes as a single process writes) and
    returns the summary; the other ranks return None.
    """
    loaded = load_model(model_dir)
    dataset = preference_dataset(
        loaded, data_file, image_folder, max_length=max_length, on_bad_record=on_bad_record
    )
    with distributed.process_group():
        shard = score_reference(
            loaded.model,
            dataset,
            batch_size,
            shard_index=distributed.rank(),
            num_shards=distributed.world_size(),
            pad_token_id=loaded.tokenizer.pad_token_id or 0,
        )
        shards = distributed.gather_to_main(shard)
    if shards is None:
        return None
    logps = merge_reference_logps(shards)
    key = cache_key(loaded, model_dir, data_file, image_folder, max_length)
    save_reference_logps(output_path, logps, key)
    summary = {
        "pairs": len(logps),
        "skipped_records": len(dataset.skipped),
        "content_key": key.digest,
        "mean_chosen_logp": float(logps.chosen_logps.mean()),
        "mean_rejected_logp": float(logps.rejected_logps.mean()),
    }
    write_json(summary_path, summary)
    return summary


def train_preference(
    *,
    start_model_dir: str | os.PathLike,
    reference_path: str | os.PathLike,
    data_file: str | os.PathLike,
    image_folder: str | os.PathLike | None,
    preference: PreferenceSettings,
    settings: TrainSettings,
    model_dir: str | os.PathLike,
    checkpoint_dir: str | os.PathLike,
    state_path: str | os.PathLike,
    metrics_path: str | os.PathLike,
) -> dict:
    """One loss × β run from the starting model; refuses a reference cache made from other inputs."""
    loaded = load_model(start_model_dir, device="cpu")
    dataset = preference_dataset(
        loaded,
        data_file,
        image_folder,
        max_length=settings.max_length,
        on_bad_record=preference.on_bad_record,
    )
    reference = load_reference_logps(
        reference_path,
        cache_key(loaded, start_model_dir, data_file, image_folder, settings.max_length),
    )
    return train(
        loaded.model,
        loaded.tokenizer,
        dataset,
        None,
        settings,
        model_dir=model_dir,
        checkpoint_dir=checkpoint_dir,
        state_path=state_path,
        metrics_path=metrics_path,
        collate=partial(collate_preference_pairs, pad_token_id=loaded.tokenizer.pad_token_id or 0),
        trainer_class=PreferenceTrainer,
        trainer_kwargs={"reference_logps": reference, "preference": preference},
    )
