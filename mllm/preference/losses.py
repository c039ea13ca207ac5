"""Preference alignment (DPO, NCA) of the MLLM on pairs of responses to one image and question:
the loss (its settings: ``mllm.preference.settings``).

The policy scores [chosen; rejected] in one forward pass; the reference model's log-probs come
from a cache scored beforehand (``reference_cache``), so training holds one model, and the loss
compares the two through the rewards r = β(log π − log π_ref).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from mllm.preference.settings import LOSS_TYPES
from mllm.settings import check_choice


class PreferenceLoss(NamedTuple):
    losses: torch.Tensor  # [B] per pair
    chosen_rewards: torch.Tensor  # [B] β(log π_w − log π_ref,w), detached
    rejected_rewards: torch.Tensor  # [B] β(log π_l − log π_ref,l), detached


def preference_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    loss_type: str,
) -> PreferenceLoss:
    """Per-pair DPO or NCA loss from sequence log-probs [B] of policy and reference.

    DPO, −log σ(r_w − r_l), only sees the margin: it can lower both responses' likelihood as long
    as the rejected one falls faster. NCA (TRL's ``nca_pair``), −log σ(r_w) − ½[log σ(−r_w) +
    log σ(−r_l)], rewards the chosen response on its own, so its likelihood is pushed up.
    """
    check_choice("loss_type", loss_type, LOSS_TYPES)
    chosen_rewards = beta * (policy_chosen - ref_chosen)  # [B]
    rejected_rewards = beta * (policy_rejected - ref_rejected)  # [B]
    if loss_type == "dpo":
        losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    else:  # nca
        losses = (
            -F.logsigmoid(chosen_rewards)
            - 0.5 * F.logsigmoid(-chosen_rewards)
            - 0.5 * F.logsigmoid(-rejected_rewards)
        )
    return PreferenceLoss(losses, chosen_rewards.detach(), rejected_rewards.detach())
