"""The in-place KV cache: the same bits as HF's concatenating ``DynamicCache``, in every strategy."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from mllm.model import cache as cache_module
from mllm.model.cache import SPARE_POSITIONS, InPlaceLayer, in_place_cache
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


def test_a_crop_or_a_row_selection_after_a_repeat_still_follows_dynamic_layer():
    """What is generated again past a crop into the shared prompt differs between beams, and a
    row selection breaks the groups: later reorders must gather those positions too."""
    for change in ("crop", "select"):
        ours, theirs = InPlaceLayer(), DynamicLayer()
        step = lockstep(ours, theirs, seed=2)
        step(7, batch=2)
        ours.batch_repeat_interleave(3), theirs.batch_repeat_interleave(3)
        batch = 6
        if change == "crop":
            ours.crop(-3), theirs.crop(-3)  # into the shared prompt
            assert ours.shared_length == 4
        else:
            rows = torch.tensor([0, 1, 3, 4])
            ours.batch_select_indices(rows), theirs.batch_select_indices(rows)
            batch = 4
            assert ours.shared_length == 0
        step(2, batch=batch)
        order = torch.tensor([1, 1, 0, 5, 3, 3][:batch]).clamp(max=batch - 1)
        ours.reorder_cache(order), theirs.reorder_cache(order)
        step(1, batch=batch)


def test_the_cache_decides_once_per_step_whether_beams_stayed_in_their_groups(monkeypatch):
    """One device-to-host sync per beam-search step, not one per layer."""
    calls = []
    real = cache_module.stays_within_groups
    monkeypatch.setattr(
        cache_module, "stays_within_groups", lambda *args: calls.append(args) or real(*args)
    )
    cache = in_place_cache()
    generator = torch.Generator().manual_seed(3)
    for layer_idx in range(4):
        keys, values = (torch.randn(2, 2, 7, 8, generator=generator) for _ in range(2))
        cache.update(keys, values, layer_idx)
    cache.batch_repeat_interleave(3)
    for layer_idx in range(4):  # HF's generate then runs the prompt's last position
        keys, values = (torch.randn(6, 2, 1, 8, generator=generator) for _ in range(2))
        cache.update(keys, values, layer_idx)
    cache.reorder_cache(torch.tensor([1, 1, 0, 5, 3, 3]))
    assert len(calls) == 1
    assert all(layer.shared_length == 7 for layer in cache.layers)
    cache.reorder_cache(torch.tensor([3, 4, 5, 0, 1, 2]))  # across the groups
    assert len(calls) == 2
    assert all(layer.shared_length == 0 for layer in cache.layers)
