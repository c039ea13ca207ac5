"""The preference trainer: ``transformers.Trainer`` with the DPO / NCA loss against cached
reference log-probs (TRL's DPOTrainer overrides the same two hooks)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import torch
from transformers import Trainer

from .logps import concatenated_logps, mean_token_nll
from .losses import preference_loss
from .reference_cache import ReferenceLogps
from .settings import PreferenceSettings


class PreferenceTrainer(Trainer):
    """``transformers.Trainer`` with the preference loss; everything else is the stock loop.

    Batches come from ``collate_preference_pairs``. The reward metrics of every micro-batch are
    kept until the next logging step, then averaged into the Trainer's log (and so into
    ``trainer_state.json``'s ``log_history``), as TRL's DPOTrainer does.
    """

    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean; the Trainer divides it

    def __init__(
        self,
        *args,
        reference_logps: ReferenceLogps,
        preference: PreferenceSettings,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if self.eval_dataset is not None:
            raise ValueError(
                "preference evaluation is not supported: the eval pairs have no reference log-probs"
            )
        if len(reference_logps) != len(self.train_dataset):
            raise ValueError(
                f"the reference log-probs cover {len(reference_logps)} pairs but the training "
                f"set has {len(self.train_dataset)}"
            )
        self.reference_logps = reference_logps
        self.preference = preference
        self._stored_metrics: dict[str, list[float]] = defaultdict(list)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Mean preference loss of the batch (+ ``nll_weight`` × chosen token NLL).

        Policy and reference are compared on the same score (sum or mean token log-prob); the
        reference's comes from the cache by the batch's ``pair_indices``.
        """
        settings = self.preference
        pairs = len(inputs["pair_indices"])
        logps = concatenated_logps(model, inputs)  # 2B rows: [chosen; rejected]
        policy = logps.score(settings.use_average_logp)  # [2B]
        ref_chosen, ref_rejected = (
            t.to(policy.device)
            for t in self.reference_logps.lookup(inputs["pair_indices"], settings.use_average_logp)
        )
        result = preference_loss(
            policy[:pairs],
            policy[pairs:],
            ref_chosen,
            ref_rejected,
            settings.beta,
            settings.loss_type,
        )
        loss = result.losses.mean()
        metrics = {
            "rewards/chosen": result.chosen_rewards,
            "rewards/rejected": result.rejected_rewards,
            "rewards/margins": result.chosen_rewards - result.rejected_rewards,
            "rewards/accuracies": (result.chosen_rewards > result.rejected_rewards).float(),
            "logps/chosen": policy[:pairs].detach(),
            "logps/rejected": policy[pairs:].detach(),
            "logps/ref_chosen": ref_chosen,
            "logps/ref_rejected": ref_rejected,
        }
        if settings.nll_weight > 0:
            nll = mean_token_nll(logps.per_token[:pairs], inputs["concatenated_labels"][:pairs])
            loss = loss + settings.nll_weight * nll
            metrics["nll"] = nll.detach().reshape(1)
        self._store_metrics(metrics)
        return (loss, logps) if return_outputs else loss

    def _store_metrics(self, metrics: Mapping[str, torch.Tensor]) -> None:
        for name, values in metrics.items():
            self._stored_metrics[name].append(self.accelerator.gather(values).float().mean().item())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the stored metrics' means since the last log to ``logs``, then log as usual."""
        for name, values in self._stored_metrics.items():
            logs[name] = sum(values) / len(values)
        self._stored_metrics.clear()
        super().log(logs, start_time)
