"""Datasets over the exercise's JSON formats, preprocessed with the model's own tokenizer and
image processor."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from mllm.data.errors import DataError
from mllm.data.images import ImageProcessor
from mllm.data.preprocess import preprocess_sft_record


def read_json_records(path: str | os.PathLike) -> list[dict]:
    """A JSON list of records (the exercise's train.json / test.json / preference_train.json)."""
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(str(path), f"not valid JSON: {error}") from error
    if not isinstance(records, list):
        raise DataError(
            str(path), f"expected a JSON list of records, found {type(records).__name__}"
        )
    return records


class SupervisedDataset(Dataset):
    """SFT records ``{id, image, conversations}`` -> model-ready samples.

    Every record is preprocessed once up front: a bad record (missing image, no assistant turn,
    answer truncated away, ...) fails *before* training starts, naming the file and the record,
    so no half-trained model is ever written. Samples are kept in memory when ``cache`` is set
    (the demo world); otherwise they are rebuilt on access to bound memory on real data.
    """

    def __init__(
        self,
        records: Sequence[dict],
        tokenizer: PreTrainedTokenizerBase,
        image_processor: ImageProcessor,
        *,
        query_num: int,
        max_length: int,
        image_folder: str | None = None,
        source: str = "dataset",
        cache: bool = True,
    ):
        self.records = list(records)
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.query_num = query_num
        self.max_length = max_length
        self.image_folder = image_folder
        self.source = source
        self._cache: list[dict] | None = None
        if not self.records:
            raise DataError(source, "no records")
        samples = [
            self._build(index)
            for index in tqdm(range(len(self.records)), desc=f"preprocess {Path(source).name}")
        ]
        self._cache = samples if cache else None

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        tokenizer: PreTrainedTokenizerBase,
        image_processor: ImageProcessor,
        *,
        query_num: int,
        max_length: int,
        image_folder: str | os.PathLike | None = None,
    ) -> SupervisedDataset:
        """The records of an SFT JSON file, with errors naming that file."""
        return cls(
            read_json_records(path),
            tokenizer,
            image_processor,
            query_num=query_num,
            max_length=max_length,
            image_folder=str(image_folder) if image_folder is not None else None,
            source=str(path),
        )

    def _build(self, index: int) -> dict:
        record = self.records[index]
        try:
            return preprocess_sft_record(
                record,
                self.tokenizer,
                self.image_processor,
                image_folder=self.image_folder,
                query_num=self.query_num,
                max_length=self.max_length,
            )
        except (DataError, KeyError, TypeError) as error:
            raise DataError(
                f"{self.source} record {index} (id {record.get('id', '?')!r})", str(error)
            ) from error

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        return self._cache[index] if self._cache is not None else self._build(index)
