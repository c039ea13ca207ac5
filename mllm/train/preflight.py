"""The image-token budget of a training data set under its start model, as a workflow job.

    python -m mllm.train.preflight preflight_records --threads N --spec JSON NAME=PATH ...

Runs on the CPU before the training rule that takes its summary as input, so a data set whose
``max_length`` would cut inside image tokens is refused (naming the sample) before any GPU time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from mllm.atomic import write_json
from mllm.data.errors import DataError
from mllm.data.images import RECENT_IMAGES, ImageLoader
from mllm.data.preprocess import read_sft_record
from mllm.data.special_tokens import IMAGE_TAG
from mllm.family.base import LoadedModel
from mllm.family.preflight import BudgetSample, check_token_budget
from mllm.family.registry import load_model
from mllm.launch import main
from mllm.preference.dataset import image_reference
from mllm.records import read_json_records

from .datasets import rendered_boxes
from .settings import TrainSettings


def sft_samples(
    records: list, loaded: LoadedModel, loader: ImageLoader, source: str
) -> Iterator[BudgetSample]:
    """The samples of ``{id, image, conversations}`` records, box turns in the family's text."""
    for index, record in enumerate(records):
        label = f"{source} record {index} (id {record.get('id', '?')!r})"
        try:
            conversations, images = read_sft_record(record, loader)
            rendered = rendered_boxes(loaded, conversations, images, label)
        except (DataError, KeyError, TypeError) as error:
            raise DataError(label, str(error)) from error
        yield BudgetSample(record.get("id", index), rendered, images)


def preference_samples(
    records: list, loaded: LoadedModel, loader: ImageLoader, source: str
) -> Iterator[BudgetSample]:
    """Each pair's question with its chosen and with its rejected response (both are trained)."""
    del loaded  # pairs carry no boxes: nothing to render in the family's convention
    for index, record in enumerate(records):
        label = f"{source} record {index} (idx {record.get('idx', '?')!r})"
        if not isinstance(record, Mapping) or not image_reference(record):
            raise DataError(label, "expected a pair object with 'image' or 'image_path'")
        image = loader(image_reference(record), source=label)
        question = {"role": "user", "content": f"{IMAGE_TAG}\n{record.get('question', '')}"}
        for key in ("chosen", "rejected"):
            answer = {"role": "assistant", "content": str(record.get(key, ""))}
            yield BudgetSample(f"{record.get('idx', index)}/{key}", [question, answer], [image])


SAMPLE_READERS = {"sft": sft_samples, "preference": preference_samples}


def preflight_records(
    *,
    start_model_dir: str | os.PathLike,
    data_file: str | os.PathLike,
    kind: str,
    max_length: int | None = None,
    refuse_over_length: bool,
    image_folder: str | os.PathLike | None = None,
    summary_path: str | os.PathLike,
) -> dict:
    """Count every sample of ``data_file`` (``kind``: sft or preference records) with the start
    model's processor at the training run's ``max_length`` (None: the training default); write
    the length distribution to ``summary_path`` or raise DataError. Only ``max_length`` of the
    run's settings is passed, so tuning anything else does not rerun the check."""
    if max_length is None:
        max_length = TrainSettings().max_length
    if kind not in SAMPLE_READERS:
        raise ValueError(f"kind must be one of {sorted(SAMPLE_READERS)}, not {kind!r}")
    loaded = load_model(start_model_dir, device="cpu")
    folder = str(image_folder) if image_folder is not None else None
    loader = ImageLoader(folder, max_images=RECENT_IMAGES)
    samples = SAMPLE_READERS[kind](read_json_records(data_file), loaded, loader, str(data_file))
    try:
        summary = check_token_budget(
            loaded, samples, max_length=max_length, refuse_over_length=refuse_over_length
        )
    except DataError as error:
        if str(data_file) in str(error):
            raise
        raise DataError(str(data_file), str(error)) from error
    summary["data_file"] = str(data_file)
    write_json(summary_path, summary)
    return summary


if __name__ == "__main__":
    main([preflight_records])
