"""The settings of a preference run: its loss, β and bad-record policy. A module of its own, so
that the reference log-prob job, which reads only the policy, does not import the loss math."""

from __future__ import annotations

from dataclasses import dataclass

from mllm.data.errors import BadRecordPolicy, check_bad_record_policy
from mllm.settings import Settings, check_choice

LOSS_TYPES = ("dpo", "nca")


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
