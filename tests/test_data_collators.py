"""SFT and preference batching: the own family's padding, and the batches on any collate."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from mllm.data.collators import pad_rows, preference_collate, sft_collate
from mllm.data.errors import DataError
from mllm.data.preprocess import IGNORE_INDEX


def sample(ids: list[int], n_pieces: int = 1, seed: int = 0) -> dict:
    """A preprocessed-sample stand-in: the last token is supervised, pieces of 2×2 patches."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.tensor(ids)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[-2] = input_ids[-1]
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": torch.arange(len(ids)),
        "image_bound": torch.tensor([[1, 2]] * n_pieces),
        "pixel_values": [torch.randn(3, 14, 4 * 14, generator=generator) for _ in range(n_pieces)],
        "tgt_sizes": torch.tensor([[2, 2]] * n_pieces),
    }


def test_sft_collate_pads_right_and_masks_by_length():
    # Token id 0 is real here (the exercise's pad id is "!"): the mask must still cover it.
    short, long = sample([5, 6, 0], n_pieces=1), sample([5, 6, 7, 8, 0], n_pieces=2, seed=1)
    batch = sft_collate([short, long], collate=partial(pad_rows, pad_token_id=0), max_length=8)
    assert batch["input_ids"].tolist() == [[5, 6, 0, 0, 0], [5, 6, 7, 8, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 0], [0, 1, 2, 3, 4]]
    assert batch["labels"].tolist() == [[-100, 0, -100, -100, -100], [-100, -100, -100, 0, -100]]
    assert [len(pieces) for pieces in batch["pixel_values"]] == [1, 2]
    assert batch["pixel_values"][1][1] is long["pixel_values"][1]
    assert [t.shape for t in batch["tgt_sizes"]] == [(1, 2), (2, 2)]
    assert [b.shape for b in batch["image_bound"]] == [(1, 2), (2, 2)]


def test_sft_collate_uses_the_given_pad_id():
    batch = pad_rows([sample([5, 6]), sample([5, 6, 7])], pad_token_id=3)
    assert batch["input_ids"][0].tolist() == [5, 6, 3]


def test_sft_collate_refuses_rows_longer_than_max_length():
    with pytest.raises(DataError, match="batch row 1: 5 tokens exceed max_length=4"):
        sft_collate(
            [sample([1, 2]), sample([1, 2, 3, 4, 5])],
            collate=partial(pad_rows, pad_token_id=0),
            max_length=4,
        )


def test_preference_collate_stacks_chosen_rows_then_rejected_rows():
    pairs = [
        {"chosen": sample([1, 2, 3], seed=0), "rejected": sample([1, 2, 4, 4], seed=1)},
        {"chosen": sample([1, 5], seed=2), "rejected": sample([1, 6, 6, 6, 6], seed=3)},
    ]
    batch = preference_collate(pairs, collate=partial(pad_rows, pad_token_id=0))
    inputs = batch["model_inputs"]
    assert "labels" not in inputs  # never handed to the model
    assert inputs["input_ids"].tolist() == [
        [1, 2, 3, 0, 0],
        [1, 5, 0, 0, 0],
        [1, 2, 4, 4, 0],
        [1, 6, 6, 6, 6],
    ]
    assert batch["lengths"].tolist() == [3, 2, 4, 5]
    assert inputs["attention_mask"].sum(dim=1).tolist() == [3, 2, 4, 5]
    assert batch["concatenated_labels"].shape == inputs["position_ids"].shape == (4, 5)
    rows = [pairs[0]["chosen"], pairs[1]["chosen"], pairs[0]["rejected"], pairs[1]["rejected"]]
    for got, row in zip(inputs["pixel_values"], rows, strict=True):
        assert got[0] is row["pixel_values"][0]
    assert len(inputs["image_bound"]) == len(inputs["tgt_sizes"]) == 4
