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


def lockstep(ours: InPlaceLayer, theirs: DynamicLayer, seed: int):
    """A step function feeding both layers the same random keys and values [batch, 2, length, 8]
    and checking that they hand attention the same tensors."""
    generator = torch.Generator().manual_seed(seed)

    def step(length: int, batch: int = 4) -> None:
        keys, values = (torch.randn(batch, 2, length, 8, generator=generator) for _ in range(2))
        for got, expected in zip(
            ours.update(keys, values), theirs.update(keys, values), strict=True
        ):
            assert torch.equal(got, expected)

    return step


def test_in_place_layer_follows_dynamic_layer_through_growth_crop_select_and_reorder():
    ours, theirs = InPlaceLayer(), DynamicLayer()
    step = lockstep(ours, theirs, seed=0)

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


def test_a_reorder_after_a_repeat_leaves_the_shared_prompt_and_still_follows_dynamic_layer():
    ours, theirs = InPlaceLayer(), DynamicLayer()
    step = lockstep(ours, theirs, seed=1)

    step(7, batch=2)  # two prompts, prefilled once
    ours.batch_repeat_interleave(3), theirs.batch_repeat_interleave(3)  # 3 beams each
    step(1, batch=6)
    assert ours.shared_length == 7
    # Within groups (beam search's own), then across them (the shared prompt is then unknown),
    # then within groups again: every step the same keys and values as DynamicLayer's.
    for order in ([1, 1, 0, 5, 3, 3], [2, 0, 1, 4, 5, 3], [3, 4, 5, 0, 1, 2], [0, 0, 0, 4, 4, 4]):
        ours.reorder_cache(torch.tensor(order)), theirs.reorder_cache(torch.tensor(order))
        step(1, batch=6)
    assert ours.shared_length == 0
