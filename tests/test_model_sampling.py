"""The fused top-k/top-p warper: HF's bits, with and without ties, alone and inside ``generate``."""

from __future__ import annotations

import pytest
import torch
from transformers import LogitsProcessorList, TopKLogitsWarper, TopPLogitsWarper

import mllm.model.mllm as mllm_module
from mllm.model.sampling import TopKTopPLogitsWarper, fused_sampling_warpers
from tests.test_model import prompt_batch

SAMPLING = dict(do_sample=True, top_p=0.8, top_k=100, temperature=0.7, repetition_penalty=1.05)


def hf_chain(top_k: int, top_p: float) -> LogitsProcessorList:
    return LogitsProcessorList([TopKLogitsWarper(top_k), TopPLogitsWarper(top_p)])


def scores_with(seed: int, rows: int = 16, vocab: int = 1400) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, vocab, generator=generator) * 3  # [B, V]


@pytest.mark.parametrize("top_k, top_p", [(100, 0.8), (5, 0.3), (100, 0.999), (1, 0.5)])
def test_fused_warper_has_the_bits_of_hf_top_k_then_top_p(top_k, top_p):
    for seed in range(5):
        scores = scores_with(seed)
        ours = TopKTopPLogitsWarper(top_k, top_p)(None, scores.clone())
        assert torch.equal(ours, hf_chain(top_k, top_p)(None, scores.clone())), seed


@pytest.mark.parametrize(
    "tie",
    ["across the top-p cut", "inside the kept tokens", "at the k-th score", "fewer finite than k"],
)
def test_rows_with_ties_decide_as_hf_does(tie):
    scores = scores_with(0)
    order = scores[3].argsort(descending=True)
    if tie == "across the top-p cut":
        scores[3, order[:40]] = scores[3, order[0]].item()  # 40 equal best: the cut is inside
    elif tie == "inside the kept tokens":
        scores[3, order[:2]] = scores[3, order[0]].item()
    elif tie == "at the k-th score":
        scores[3, order[99:104]] = scores[3, order[99]].item()  # more than k scores kept
    else:
        scores[3, order[40:]] = -float("inf")
    ours = TopKTopPLogitsWarper(100, 0.8)(None, scores.clone())
    assert torch.equal(ours, hf_chain(100, 0.8)(None, scores.clone()))


def test_only_a_cut_inside_a_tie_pays_for_hf_sort(monkeypatch):
    sorts = []
    sort = torch.sort
    monkeypatch.setattr(torch, "sort", lambda *a, **k: sorts.append(1) or sort(*a, **k))
    warper = TopKTopPLogitsWarper(100, 0.8)
    scores = scores_with(0)
    scores[3, scores[3].argsort()[-2:]] = scores[3].max().item()  # a tie both sides keep
    warper(None, scores)
    assert not sorts  # the sorted row is known
    scores[3, scores[3].argsort()[-40:]] = scores[3].max().item()
    warper(None, scores)
    assert sorts  # the cut falls among 40 tied tokens: HF's own top-p


def test_only_plain_sampling_with_both_filters_is_rewritten():
    class Defaults:
        do_sample, num_beams, top_k, top_p, temperature, top_h = False, 1, 50, 1.0, 1.0, None

    for kwargs in (
        dict(do_sample=False),
        dict(do_sample=True, num_beams=3, top_k=100, top_p=0.8),
        dict(do_sample=True, top_k=100),  # top_p 1.0 from the defaults
        dict(do_sample=True, top_k=100, top_p=0.8, top_h=0.5),
    ):
        unchanged = dict(kwargs)
        assert fused_sampling_warpers(kwargs, Defaults) == []
        assert kwargs == unchanged
    kwargs = dict(do_sample=True, top_k=100, top_p=0.8, temperature=0.7, max_new_tokens=4)
    warpers = fused_sampling_warpers(kwargs, Defaults)
    assert [type(w).__name__ for w in warpers] == [
        "TemperatureLogitsWarper",
        "TopKTopPLogitsWarper",
    ]
    assert kwargs == dict(do_sample=True, top_k=0, top_p=1.0, temperature=1.0, max_new_tokens=4)


def test_sampling_with_the_fused_warper_has_the_bits_of_hf_warpers(model, monkeypatch):
    batch = prompt_batch(lengths=(16, 6, 11))
    outputs, sorts = {}, {"fused": [], "hf": []}
    sort = torch.sort
    for name in ("fused", "hf"):
        if name == "hf":
            monkeypatch.setattr(mllm_module, "fused_sampling_warpers", lambda kwargs, defaults: [])
        monkeypatch.setattr(
            torch, "sort", lambda *a, _n=name, **k: sorts[_n].append(1) or sort(*a, **k)
        )
        torch.manual_seed(0)
        outputs[name] = model.generate(
            **batch,
            max_new_tokens=24,
            return_dict_in_generate=True,
            output_scores=True,
            **{**SAMPLING, "top_k": 20},  # fewer than the tiny vocabulary
        )
    fused, hf = outputs["fused"], outputs["hf"]
    assert len(sorts["fused"]) < len(sorts["hf"]) == len(hf.scores)  # the fused warper ran
    assert torch.equal(fused.sequences, hf.sequences)
    assert len(fused.scores) == len(hf.scores)
    for step, (ours, theirs) in enumerate(zip(fused.scores, hf.scores, strict=True)):
        assert torch.equal(ours, theirs), step
