"""Datasets over the exercise's JSON formats, preprocessed by the model's family with the model's
own processing (``ModelFamily.training_sample``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import Dataset
from tqdm.auto import tqdm

from mllm.data.errors import DataError
from mllm.data.images import RECENT_IMAGES, ImageLoader, image_file
from mllm.data.preprocess import read_sft_record, sft_image_refs
from mllm.family.base import LoadedModel
from mllm.records import read_json_records

log = logging.getLogger(__name__)


class Preprocessing:
    """What the samples built in one pass over a data set's records share: each picture decoded
    once (``images``) and processed once (``sample``, the family's ``sample_builder``), however
    many records show it, its tensors shared by their samples. The ``max_images`` most recent
    pictures are remembered (None: all, 0: none), which bounds the memory on real data."""

    def __init__(self, loaded: LoadedModel, image_folder: str | None, *, max_images: int | None):
        self.images = ImageLoader(image_folder, max_images=max_images)
        self.sample = loaded.family.sample_builder(loaded, max_images=max_images)


class PreprocessedDataset(Dataset):
    """Records preprocessed for one model (``loaded``) by its family: the base of the SFT and
    preference datasets, which check and preprocess every record up front so that a bad one fails
    *before* training starts, naming the file and the record (no half-trained model is written).

    Subclasses check and build every record in ``_preprocess(records)``, which returns the
    records kept (``records``) and their samples, and build one record's sample with
    ``_build(record, index, preprocessing)`` (a ``Preprocessing`` shared by the pass over the
    records); samples are kept in memory when ``cache`` is set (the demo world), otherwise
    rebuilt on access to bound memory on real data.
    """

    records: list[dict]
    _cache: list[dict] | None

    def __init__(
        self,
        records: Sequence[dict],
        loaded: LoadedModel,
        *,
        max_length: int,
        image_folder: str | None = None,
        source: str = "dataset",
        cache: bool = True,
    ):
        self.loaded = loaded
        self.max_length = max_length
        self.image_folder = image_folder
        self.source = source
        self.records, samples = self._preprocess(records)
        self._cache = samples if cache else None

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        loaded: LoadedModel,
        *,
        max_length: int,
        image_folder: str | os.PathLike | None = None,
        **options,
    ):
        """The records of a JSON list file, preprocessed for ``loaded``; errors name the file.
        ``options`` are the subclass's own keyword arguments."""
        return cls(
            read_json_records(path),
            loaded,
            max_length=max_length,
            image_folder=str(image_folder) if image_folder is not None else None,
            source=str(path),
            **options,
        )

    def _preprocess(self, records: Sequence[dict]) -> tuple[list[dict], list[dict]]:
        """The records kept and their samples, every record checked and built up front."""
        raise NotImplementedError

    def _build(self, record: dict, index: int, preprocessing: Preprocessing) -> dict:
        raise NotImplementedError

    def _preprocessing(self) -> Preprocessing:
        """For one pass over the records: the last ``RECENT_IMAGES`` pictures remembered (the
        records of one picture usually follow each other)."""
        return Preprocessing(self.loaded, self.image_folder, max_images=RECENT_IMAGES)

    def _image_refs(self, record: dict) -> list:
        """The image references (paths or base64) of one record."""
        raise NotImplementedError

    def image_files(self) -> dict[str, Path]:
        """The image files the records name, by reference: inputs of the samples beside the
        records themselves (which hold base64 images)."""
        refs = {ref for record in self.records for ref in self._image_refs(record)}
        files = {ref: image_file(ref, self.image_folder) for ref in refs if isinstance(ref, str)}
        return {ref: path for ref, path in files.items() if path is not None}

    def _progress(self, records: Sequence[dict]):
        return tqdm(records, desc=f"preprocess {Path(self.source).name}")

    def _sample(self, index: int) -> dict:
        if self._cache is not None:
            return self._cache[index]
        alone = Preprocessing(self.loaded, self.image_folder, max_images=0)
        return self._build(self.records[index], index, alone)

    def __len__(self) -> int:
        return len(self.records)


class SupervisedDataset(PreprocessedDataset):
    """SFT records ``{id, image, conversations}`` -> model-ready samples (see the base class).

    A sample longer than ``max_length`` is cut at the end, mid-answer and without its end token;
    such samples are counted and logged, and more than ``max_truncated_share`` of them (a
    ``max_length`` too small for the data) is an error.
    """

    def __init__(self, *args, max_truncated_share: float, **options):
        """``args``, ``options``: the base class's."""
        self.max_truncated_share = max_truncated_share
        super().__init__(*args, **options)

    def _preprocess(self, records: Sequence[dict]) -> tuple[list[dict], list[dict]]:
        records = list(records)
        if not records:
            raise DataError(self.source, "no records")
        preprocessing = self._preprocessing()
        samples = [
            self._build(record, index, preprocessing)
            for index, record in enumerate(self._progress(records))
        ]
        truncated = [index for index, sample in enumerate(samples) if sample["truncated"]]
        if truncated:
            summary = (
                f"{len(truncated)} of {len(samples)} samples are longer than max_length="
                f"{self.max_length} and lose the end of their answer (first: record "
                f"{truncated[0]}, id {records[truncated[0]].get('id', '?')!r})"
            )
            if len(truncated) > self.max_truncated_share * len(samples):
                raise DataError(
                    self.source,
                    f"{summary}; more than max_truncated_share={self.max_truncated_share} of "
                    "them: raise max_length (or max_truncated_share)",
                )
            log.warning("%s: %s", self.source, summary)
        return records, samples

    def _build(self, record: dict, index: int, preprocessing: Preprocessing) -> dict:
        sample_id = record.get("id", "?")
        try:
            conversations, images = read_sft_record(record, preprocessing.images)
            return preprocessing.sample(
                rendered_boxes(self.loaded, conversations, images, f"sample {sample_id}"),
                images,
                max_length=self.max_length,
                sample_id=sample_id,
            )
        except (DataError, KeyError, TypeError) as error:
            raise DataError(self._record_label(record, index), str(error)) from error

    def _record_label(self, record: dict, index: int) -> str:
        """Where a record comes from: its file and index, led by the line it was converted from
        when it carries one (``source``: grounding records name their REC line)."""
        label = f"{self.source} record {index} (id {record.get('id', '?')!r})"
        origin = record.get("source")
        return f"{origin} (as {label})" if isinstance(origin, str) else label

    def _image_refs(self, record: dict) -> list:
        return sft_image_refs(record)

    def __getitem__(self, index: int) -> dict:
        return self._sample(index)


def rendered_boxes(
    loaded: LoadedModel, conversations: Sequence[dict], images: Sequence, source: str
) -> list[dict]:
    """``conversations`` with each grounding turn ``{role: assistant, expression, box}`` (a pixel
    box of the record's one image) written as the family's answer text (``box_answer``), so one
    grounding file trains every family in its own box convention."""
    rendered = []
    for turn in conversations:
        if "box" in turn:
            if len(images) != 1:
                raise DataError(source, f"a box answer needs exactly one image, not {len(images)}")
            box = tuple(float(v) for v in turn["box"])
            content = loaded.family.box_answer(loaded, turn["expression"], box, images[0])
            turn = {"role": turn["role"], "content": content}
        rendered.append(turn)
    return rendered
