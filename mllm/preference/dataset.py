"""Preference pairs ``{idx, question, chosen, rejected, image | image_path}`` (the exercise's
``preference_train.json``) as pairs of model-ready samples, and their collator."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch

from mllm.data.collators import Collate, preference_collate
from mllm.data.errors import BadRecordPolicy, DataError, build_each, check_bad_record_policy
from mllm.data.special_tokens import IMAGE_TAG
from mllm.family.base import LoadedModel
from mllm.train.datasets import PreprocessedDataset, Preprocessing

log = logging.getLogger(__name__)


class PreferenceDataset(PreprocessedDataset):
    """Records ``{idx, question, chosen, rejected, image | image_path}`` -> pairs of samples.

    Item i is ``{"pair_index": i, "chosen": sample, "rejected": sample}``: two conversations
    ``"<image>\\n" + question`` -> response, preprocessed like SFT samples. ``pair_index`` is
    what the reference cache is indexed by.

    Every record is checked up front. A bad one (no image, an empty response, identical
    responses, a response cut away by ``max_length``) raises a ``DataError`` naming its ``idx``,
    or with ``on_bad_record="skip"`` is left out, counted in ``skipped`` and logged.
    """

    def __init__(
        self,
        records: Sequence[dict],
        loaded: LoadedModel,
        *,
        system_prompt: str | None = None,
        on_bad_record: BadRecordPolicy = "raise",
        source: str = "preference data",
        **options,
    ):
        """``system_prompt`` None: the family's. ``options``: the base class's ``max_length``,
        ``image_folder``, ``cache``."""
        check_bad_record_policy(on_bad_record)
        self.system_prompt = system_prompt
        self.on_bad_record = on_bad_record
        self.skipped: list[str] = []  # one DataError message per skipped record
        super().__init__(records, loaded, source=source, **options)

    def _preprocess(self, records: Sequence[dict]) -> tuple[list[dict], list[dict]]:
        preprocessing = self._preprocessing()
        built = build_each(
            self._progress(records),
            lambda record, position: self._build(record, position, preprocessing),
            self.on_bad_record,
            self.skipped,
        )
        kept, pairs = [record for record, _ in built], [pair for _, pair in built]
        if self.skipped:
            log.warning(
                "%s: skipped %d of %d records (on_bad_record='skip'); first: %s",
                self.source,
                len(self.skipped),
                len(records),
                self.skipped[0],
            )
        if not pairs:
            raise DataError(self.source, "no usable preference pairs")
        return kept, pairs

    def _build(self, record: Mapping, position: int, preprocessing: Preprocessing) -> dict:
        if not isinstance(record, Mapping):
            raise DataError(f"{self.source} record {position}", "expected a JSON object")
        source = f"{self.source} record {position} (idx {record.get('idx', '?')!r})"
        for key in ("question", "chosen", "rejected"):
            if not isinstance(record.get(key), str):
                raise DataError(source, f"{key!r} must be a string")
        for key in ("chosen", "rejected"):
            if not record[key].strip():
                raise DataError(source, f"the {key} response is empty")
        if record["chosen"].strip() == record["rejected"].strip():
            raise DataError(source, "chosen and rejected responses are identical")
        image_ref = image_reference(record)
        if not image_ref:
            raise DataError(source, "no image: the record needs 'image' (base64) or 'image_path'")
        image = preprocessing.images(image_ref, source=source)
        question = {"role": "user", "content": f"{IMAGE_TAG}\n{record['question']}"}
        pair = {}
        for key in ("chosen", "rejected"):
            try:
                pair[key] = preprocessing.sample(
                    [question, {"role": "assistant", "content": record[key]}],
                    [image],
                    max_length=self.max_length,
                    sample_id=record.get("idx", position),
                    system_prompt=self.system_prompt,
                )
            except DataError as error:
                raise DataError(source, f"{key} response: {error.problem}") from error
        return pair

    def _image_refs(self, record: dict) -> list:
        return [image_reference(record)]

    def __getitem__(self, index: int) -> dict:
        return {"pair_index": index, **self._sample(index)}


def image_reference(record: Mapping) -> str | None:
    """The image of a pair record: ``image`` (a path or base64), else ``image_path``."""
    return record.get("image") or record.get("image_path")


def collate_preference_pairs(items: Sequence[Mapping], *, collate: Collate) -> dict:
    """``preference_collate`` (rows through ``collate``, the model family's) plus
    ``pair_indices`` ([B] long) to look the reference log-probs up."""
    batch = preference_collate(items, collate=collate)
    batch["pair_indices"] = torch.tensor([item["pair_index"] for item in items])
    return batch
