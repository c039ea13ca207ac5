"""Batching of training samples: the own family's right-padding (``pad_rows``, its
``ModelFamily.collate``), and the family-independent SFT and preference batches built on any
family's ``collate``.

Padding goes on the right. ``attention_mask`` comes from each row's real length, never from
``input_ids != pad``: the pad id can be a real token (the exercise padded with 0, which is "!").
Images stay per-row lists, because rows hold different numbers of pieces of different sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence

from mllm.data.errors import DataError
from mllm.data.preprocess import IGNORE_INDEX

Sample = Mapping[str, object]  # a ModelFamily.training_sample output
Collate = Callable[[Sequence[Sample]], dict]  # a family's collate for one model: rows -> batch


def sft_collate(samples: Sequence[Sample], *, collate: Collate, max_length: int) -> dict:
    """``collate`` (right-padded model kwargs + ``labels`` [B, L]) of SFT samples. Samples are not
    cut here: a row longer than ``max_length`` raises, because only preprocessing knows where a
    cut keeps the image placeholders whole.
    """
    for row, sample in enumerate(samples):
        if len(sample["input_ids"]) > max_length:
            raise DataError(
                f"batch row {row}",
                f"{len(sample['input_ids'])} tokens exceed max_length={max_length}",
            )
    return collate(samples)


def preference_collate(samples: Sequence[Mapping[str, Sample]], *, collate: Collate) -> dict:
    """Batch preference pairs ``{"chosen": sample, "rejected": sample}`` into 2B rows.

    Rows 0..B−1 are the chosen responses and rows B..2B−1 the rejected ones, so one forward
    pass scores both and ``logps[:B]`` / ``logps[B:]`` split them. Returns ``model_inputs``
    (``collate``'s model kwargs for the 2B rows), ``concatenated_labels`` ([2B, L] long) and
    ``lengths`` ([2B] long, real tokens per row).
    """
    rows = [pair["chosen"] for pair in samples] + [pair["rejected"] for pair in samples]
    model_inputs = collate(rows)
    labels = model_inputs.pop("labels")  # [2B, L]
    return {
        "model_inputs": model_inputs,
        "concatenated_labels": labels,
        "lengths": model_inputs["attention_mask"].sum(dim=1),  # [2B]
    }


def pad_rows(rows: Sequence[Sample], pad_token_id: int) -> dict:
    """The own family's batch: right-pad ``input_ids``, ``position_ids``, ``labels`` ([B, L] long;
    padded with ``pad_token_id``, 0, −100) and add ``attention_mask``; keep the image tensors per
    row: ``pixel_values`` (B × n_i × [3, patch, Lp]), ``tgt_sizes`` and ``image_bound`` (B ×
    [n_i, 2] long)."""

    def pad(key: str, value: int) -> torch.Tensor:  # B × [L_i] -> [B, L]
        return pad_sequence([row[key] for row in rows], batch_first=True, padding_value=value)

    input_ids = pad("input_ids", pad_token_id)  # [B, L]
    lengths = torch.tensor([len(row["input_ids"]) for row in rows])  # [B]
    return {
        "input_ids": input_ids,
        "attention_mask": (torch.arange(input_ids.shape[1]) < lengths[:, None]).long(),  # [B, L]
        "position_ids": pad("position_ids", 0),  # [B, L]
        "labels": pad("labels", IGNORE_INDEX),  # [B, L]
        "pixel_values": [list(row["pixel_values"]) for row in rows],  # B × n_i × [3, patch, Lp]
        "tgt_sizes": [row["tgt_sizes"] for row in rows],  # B × [n_i, 2]
        "image_bound": [row["image_bound"] for row in rows],  # B × [n_i, 2]
    }
