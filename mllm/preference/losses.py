"""Preference alignment (DPO, NCA) of the MLLM on pairs of responses to one image and question:
the settings of a run and the loss.

The policy scores [chosen; rejected] in one forward pass; the reference model's log-probs come
from a cache scored beforehand (``reference_cache``), so training holds one model, and the loss
compares the two through the rewards r = β(log π − log π_ref).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from mllm.data.errors import BadRecordPolicy, check_bad_record_policy
from mllm.settings import Settings, check_choice

LOSS_TYPES = ("dpo", "nca")


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreferenceSettings(Settings):
    """Loss hyperparameters and the bad-record policy of a preference run.

    ``nll_weight`` adds the chosen response's mean token NLL to the loss (TRL's ``rpo_alpha``, its
    ``sft`` loss term in TRL 1.x): plain DPO on the demo world collapsed to short answers without
    it (DEMO_FEASIBILITY.md). ``use_average_logp`` scores sequences by their mean token log-prob
    instead of the sum, for policy and reference alike.
    """

    loss_type: str = "dpo"
    beta: float = 0.1
    use_average_logp: bool = False
    nll_weight: float = 0.0
    on_bad_record: BadRecordPolicy = "raise"

    def __post_init__(self):
        check_choice("loss_type", self.loss_type, LOSS_TYPES)
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, got {self.beta}")
        if self.nll_weight < 0:
            raise ValueError(f"nll_weight must be >= 0, got {self.nll_weight}")
        check_bad_record_policy(self.on_bad_record)


# -- losses -----------------------------------------------------------------------------------


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
