"""Top-k then top-p filtering for sampling, with HF's bits but without sorting the vocabulary.

HF's ``TopPLogitsWarper`` sorts every row of the scores [B, V] at every step; after top-k only
k of the V entries are finite, so that sort is mostly of −inf, and it is the costliest step of
sampling at batch 16 on a CPU (more than the sampling draw itself). When each row keeps exactly
k finite scores, the sorted row HF builds is known from the top-k values alone: −inf × (V − k),
then the k values ascending. The softmax and cumulative sum then run on that same tensor, so every bit matches HF's; any row
with ties (where HF's sort could order the tied tokens differently) sends the call to HF's own
warpers.
"""

from __future__ import annotations

import torch
from transformers import (
    LogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


class TopKTopPLogitsWarper(LogitsProcessor):
    """HF's ``TopKLogitsWarper(top_k)`` followed by ``TopPLogitsWarper(top_p)``, bit for bit."""

    def __init__(self, top_k: int, top_p: float, min_tokens_to_keep: int = 1):
        self.top_k_warper = TopKLogitsWarper(top_k, min_tokens_to_keep=min_tokens_to_keep)
        self.top_p_warper = TopPLogitsWarper(top_p, min_tokens_to_keep=min_tokens_to_keep)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        vocab_size = scores.shape[-1]
        top_k = min(self.top_k_warper.top_k, vocab_size)
        values, indices = torch.topk(scores, top_k)  # [B, k], descending
        threshold = values[..., -1:]  # [B, 1]
        filtered = scores.masked_fill(scores < threshold, self.top_k_warper.filter_value)
        ascending = values.flip(-1)  # [B, k]
        top_p = self.top_p_warper
        if not self._keeps_exactly_k_finite(scores, threshold, ascending, top_k):
            return top_p(input_ids, filtered)
        sorted_scores = torch.cat(
            [ascending.new_full((len(scores), vocab_size - top_k), top_p.filter_value), ascending],
            dim=-1,
        )  # [B, V]: the values torch.sort(filtered) returns, in its order
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)[..., vocab_size - top_k :]
        remove_sorted = cumulative <= (1 - top_p.top_p)  # [B, k]
        remove_sorted[..., -top_p.min_tokens_to_keep :] = False
        tied = ascending[..., 1:] == ascending[..., :-1]  # [B, k-1]
        if bool((tied & (remove_sorted[..., 1:] != remove_sorted[..., :-1])).any()):
            return top_p(input_ids, filtered)  # which tied token is cut: HF's sort decides
        remove = torch.zeros_like(scores, dtype=torch.bool).scatter(
            1, indices.flip(-1), remove_sorted
        )  # [B, V]; the −inf entries stay −inf as in HF
        return filtered.masked_fill(remove, top_p.filter_value)

    def _keeps_exactly_k_finite(
        self, scores: torch.Tensor, threshold: torch.Tensor, ascending: torch.Tensor, top_k: int
    ) -> bool:
        """Whether every row keeps exactly ``top_k`` finite scores (−inf elsewhere), so that
        sorting it gives −inf × (V − k), then ``ascending``."""
        if top_k == scores.shape[-1] or self.top_k_warper.filter_value != -float("inf"):
            return False
        finite = bool(torch.isfinite(ascending).all())
        return finite and bool(((scores >= threshold).sum(-1) == top_k).all())


def fused_sampling_warpers(generation_kwargs: dict, defaults) -> list[LogitsProcessor]:
    """For plain sampling with top-k and top-p: take temperature, top_k and top_p out of
    ``generation_kwargs`` (in place; values missing there come from ``defaults``, a generation
    config) and return the warpers that replace HF's, in HF's order (temperature, top-k, top-p).
    Custom processors run before HF's warpers, so these land where HF's would have been.
    Anything else (greedy, beam, no top-k or no top-p, top-h): no change and no warpers."""

    def setting(name: str):
        return generation_kwargs.get(name, getattr(defaults, name, None))

    sampling = setting("do_sample") and (setting("num_beams") or 1) == 1
    top_k, top_p = setting("top_k"), setting("top_p")
    top_h_first = setting("top_h") is not None  # HF runs top-h between temperature and top-k
    if not sampling or top_h_first or not top_k or top_p is None or top_p >= 1.0:
        return []
    temperature = setting("temperature")
    generation_kwargs.update(temperature=1.0, top_k=0, top_p=1.0)
    warpers: list[LogitsProcessor] = []
    if temperature is not None and temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    warpers.append(TopKTopPLogitsWarper(int(top_k), float(top_p)))
    return warpers
