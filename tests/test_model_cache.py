"""The in-place KV cache: the same bits as HF's concatenating ``DynamicCache``, in every strategy."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from mllm.model.cache import SPARE_POSITIONS, InPlaceLayer
from tests.test_model import prompt_batch

NEW_TOKENS = SPARE_POSITIONS + 16  # past the first buffer: the cache must grow once


@pytest.mark.parametrize(
    "strategy",
    [
        dict(do_sample=False),
        dict(num_beams=3, do_sample=False, repetition_penalty=1.2),
        dict(do_sample=True, top_p=0.8, top_k=100, temperature=0.7, repetition_penalty=1.05),
    ],
    ids=["greedy", "beam3-penalty", "sampling"],
)
def test_generation_with_the_in_place_cache_has_the_bits_of_dynamic_cache(model, strategy):
    batch = prompt_batch(lengths=(16, 6))
    outputs = {}
    for name, cache in (("in place", None), ("dynamic", DynamicCache())):
        torch.manual_seed(0)
        outputs[name] = model.generate(
            **batch,
            **({} if cache is None else {"cache": cache}),
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            return_dict_in_generate=True,
            output_logits=True,
            **strategy,
        )
    in_place, dynamic = outputs["in place"], outputs["dynamic"]
    assert isinstance(in_place.cache.layers[0], InPlaceLayer)
    assert torch.equal(in_place.sequences, dynamic.sequences)
    assert len(in_place.logits) == NEW_TOKENS
    for step, (ours, theirs) in enumerate(zip(in_place.logits, dynamic.logits, strict=True)):
        assert torch.equal(ours, theirs), step


def test_in_place_layer_follows_dynamic_layer_through_growth_crop_select_and_reorder():
    generator = torch.Generator().manual_seed(0)
    ours, theirs = InPlaceLayer(), DynamicLayer()

    def step(length: int, batch: int = 4) -> None:
        keys, values = (torch.randn(batch, 2, length, 8, generator=generator) for _ in range(2))
        for got, expected in zip(
            ours.update(keys, values), theirs.update(keys, values), strict=True
        ):
            assert torch.equal(got, expected)

    step(10)  # prefill
    for _ in range(SPARE_POSITIONS + 5):  # decoding steps, growing the buffer once
        step(1)
    ours.crop(-3), theirs.crop(-3)
    step(2)
    for order in ([2, 2, 0, 1], [1, 0, 2, 2], [0, 1, 2, 3]):  # a cycle, a swap, no move
        ours.reorder_cache(torch.tensor(order)), theirs.reorder_cache(torch.tensor(order))
        step(1)
    (
        ours.batch_select_indices(torch.tensor([0, 3])),
        theirs.batch_select_indices(torch.tensor([0, 3])),
    )
    step(1, batch=2)
    assert ours.get_seq_length() == theirs.get_seq_length() == 10 + SPARE_POSITIONS + 5 - 3 + 6
