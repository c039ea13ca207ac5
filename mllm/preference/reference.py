"""Reference log-probs of the preference pairs (exercise task 3), scored once with the starting
model and shared by every DPO / NCA run (``mllm.preference.train``). The job, run by the workflow as

    python -m mllm.preference.reference build_reference_logps --threads N --spec JSON NAME=PATH ...

(or under ``python -m torch.distributed.run ... -m mllm.preference.reference``; see
``mllm.launch``).
"""

from __future__ import annotations

import os

from mllm import distributed
from mllm.atomic import write_json
from mllm.data.errors import BadRecordPolicy
from mllm.family.registry import load_model
from mllm.launch import main
from mllm.train.settings import TrainSettings

from .dataset import PreferenceDataset
from .reference_cache import (
    loaded_model_cache_key,
    merge_reference_logps,
    save_reference_logps,
    score_reference,
)
from .settings import PreferenceSettings


def build_reference_logps(
    *,
    model_dir: str | os.PathLike,
    data_file: str | os.PathLike,
    image_folder: str | os.PathLike | None = None,
    max_length: int = TrainSettings.max_length,
    batch_size: int = 8,
    on_bad_record: BadRecordPolicy = PreferenceSettings.on_bad_record,
    output_path: str | os.PathLike,
    summary_path: str | os.PathLike,
) -> dict | None:
    """Score every pair with the reference (= starting) model and cache the result with its key.

    Under torchrun each rank scores a strided share of the batches on its own device; rank 0
    gathers the shares and alone writes the cache (the same bytes as a single process writes) and
    returns the summary; the other ranks return None. ``max_length`` must be the one the training
    runs use (their ``settings.max_length``): it is part of the cache's key.
    """
    loaded = load_model(model_dir)
    dataset = PreferenceDataset.from_file(
        data_file,
        loaded,
        max_length=max_length,
        image_folder=image_folder,
        on_bad_record=on_bad_record,
    )
    with distributed.process_group():
        shard = score_reference(
            loaded,
            dataset,
            batch_size,
            shard_index=distributed.rank(),
            num_shards=distributed.world_size(),
        )
        shards = distributed.gather_to_main(shard)
    if shards is None:
        return None
    logps = merge_reference_logps(shards)
    key = loaded_model_cache_key(
        loaded,
        model_dir=model_dir,
        data_path=data_file,
        image_folder=image_folder,
        max_length=max_length,
    )
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


if __name__ == "__main__":
    main([build_reference_logps])
