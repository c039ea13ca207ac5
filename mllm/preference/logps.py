"""Sequence log-probabilities of responses on **pre-shifted** labels.

``labels[t]`` is already the token that ``logits[t]`` predicts (see ``mllm.data.preprocess``), so
nothing here shifts again: a second shift scores every token against the wrong position (the
exercise's double-shift bug, EXERCISE_SPEC §7.1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import nn

from mllm.data.preprocess import IGNORE_INDEX


class SequenceLogps(NamedTuple):
    """Log-probs of each row's supervised tokens; unpacks as ``(per_token, sum, avg)``."""

    per_token: torch.Tensor  # [B, L] float32, 0 at unsupervised positions
    sum: torch.Tensor  # [B] float64
    avg: torch.Tensor  # [B] float64, sum / number of supervised tokens

    def score(self, average: bool) -> torch.Tensor:
        """The sequence score a preference loss compares: average or sum over tokens, [B]."""
        return self.avg if average else self.sum


def get_batch_logps(logits: torch.Tensor, labels: torch.Tensor) -> SequenceLogps:
    """Per-token, summed and averaged log-probs of ``labels`` [B, L] under ``logits`` [B, L, V].

    The log-softmax runs only at supervised positions (``labels != −100``), in float32: it needs
    no second [B, L, V] tensor, and bf16 logits would round the log-probs the loss subtracts.
    Sums accumulate in float64: a float32 sum of a few hundred tokens is off by about 1e-5 with
    the summation order alone (left vs right padding; MODEL_FAMILIES.md P9).
    """
    supervised = labels != IGNORE_INDEX  # [B, L]
    picked = logits[supervised].float().log_softmax(dim=-1)  # [N, V]
    token_logps = picked.gather(-1, labels[supervised].unsqueeze(-1)).squeeze(-1)  # [N]
    per_token = torch.zeros(labels.shape, dtype=torch.float32, device=logits.device)  # [B, L]
    per_token = per_token.masked_scatter(supervised, token_logps)
    total = per_token.double().sum(dim=1)  # [B] float64
    counts = supervised.sum(dim=1)  # [B]
    return SequenceLogps(per_token, total, total / counts.clamp(min=1))


def mean_token_nll(per_token: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood per supervised token of the rows ``per_token`` [B, L] (scalar).

    Tokens, not rows, are averaged, as TRL's ``sft`` loss term does, so a long response weighs
    more than a short one, like in SFT.
    """
    return -per_token.sum() / (labels != IGNORE_INDEX).sum().clamp(min=1)


def concatenated_logps(model: nn.Module, batch: Mapping) -> SequenceLogps:
    """Log-probs of the 2B rows ([chosen; rejected]) of a ``preference_collate`` batch, in ONE
    forward pass on its ``model_inputs`` (the family's batch, with the real attention mask).

    Training and reference scoring both go through here, so at step 0 the policy's log-probs
    equal the cached reference's and every reward starts at exactly 0. The forward runs without
    labels: with labels in training mode the model returns only a loss, not the logits.
    """
    outputs = model(**batch["model_inputs"], use_cache=False)
    return get_batch_logps(outputs.logits, batch["concatenated_labels"])  # [2B, L, V] -> [2B]
