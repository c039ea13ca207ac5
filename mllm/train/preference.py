"""Preference alignment (DPO, NCA) of the MLLM on pairs of responses to one image and question.

The policy scores [chosen; rejected] in one forward pass; the reference model's log-probs come
from a cache scored beforehand (``reference_cache``), so training holds one model, and the loss
compares the two through the rewards r = β(log π − log π_ref).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase, Trainer

from mllm.data.collators import preference_collate
from mllm.data.errors import DataError
from mllm.data.images import ImageProcessor, load_image
from mllm.data.preprocess import preprocess_conversation
from mllm.data.special_tokens import IMAGE_TAG
from mllm.data.template import DEFAULT_SYSTEM_PROMPT

from .logps import concatenated_logps, mean_token_nll
from .reference_cache import ReferenceLogps
from .settings import settings_from_dict

log = logging.getLogger(__name__)

LOSS_TYPES = ("dpo", "nca")
ON_BAD_RECORD = ("raise", "skip")


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreferenceSettings:
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
    on_bad_record: str = "raise"

    def __post_init__(self):
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type {self.loss_type!r} is not one of {LOSS_TYPES}")
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, got {self.beta}")
        if self.nll_weight < 0:
            raise ValueError(f"nll_weight must be >= 0, got {self.nll_weight}")
        if self.on_bad_record not in ON_BAD_RECORD:
            raise ValueError(f"on_bad_record {self.on_bad_record!r} is not one of {ON_BAD_RECORD}")

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any] | None, *, where: str = "preference settings"
    ) -> PreferenceSettings:
        return settings_from_dict(cls, values, where)


# -- data -------------------------------------------------------------------------------------


class PreferenceDataset(Dataset):
    """Records ``{idx, question, chosen, rejected, image | image_path}`` -> pairs of samples.

    Item i is ``{"pair_index": i, "chosen": sample, "rejected": sample}``: two conversations
    ``"<image>\\n" + question`` -> response, preprocessed like SFT samples. ``pair_index`` is
    what the reference cache is indexed by.

    Every record is checked up front. A bad one (no image, an empty response, identical
    responses, a response cut away by ``max_length``) raises a ``DataError`` naming its ``idx``,
    or with ``on_bad_record="skip"`` is left out, counted in ``skipped`` and logged.
    """

    def __init__(
        self,
        records: Sequence[dict],
        tokenizer: PreTrainedTokenizerBase,
        image_processor: ImageProcessor,
        *,
        query_num: int,
        max_length: int,
        image_folder: str | None = None,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        on_bad_record: str = "raise",
        source: str = "preference data",
        cache: bool = True,
    ):
        if on_bad_record not in ON_BAD_RECORD:
            raise ValueError(f"on_bad_record {on_bad_record!r} is not one of {ON_BAD_RECORD}")
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.query_num = query_num
        self.max_length = max_length
        self.image_folder = image_folder
        self.system_prompt = system_prompt
        self.source = source
        self.skipped: list[str] = []  # one DataError message per skipped record
        self.records: list[dict] = []
        pairs = []
        for position, record in enumerate(tqdm(records, desc=f"preprocess {Path(source).name}")):
            try:
                pair = self._build(record, position)
            except DataError as error:
                if on_bad_record == "raise":
                    raise
                self.skipped.append(str(error))
                continue
            self.records.append(record)
            pairs.append(pair)
        if self.skipped:
            log.warning(
                "%s: skipped %d of %d records (on_bad_record='skip'); first: %s",
                source,
                len(self.skipped),
                len(records),
                self.skipped[0],
            )
        if not pairs:
            raise DataError(source, "no usable preference pairs")
        self._cache = pairs if cache else None

    def _build(self, record: Mapping, position: int) -> dict:
        if not isinstance(record, Mapping):
            raise DataError(f"{self.source} record {position}", "expected a JSON object")
        source = f"{self.source} record {position} (idx {record.get('idx', '?')!r})"
        for key in ("question", "chosen", "rejected"):
            if not isinstance(record.get(key), str):
                raise DataError(source, f"{key!r} must be a string")
        for key in ("chosen", "rejected"):
            if not record[key].strip():
                raise DataError(source, f"the {key} response is empty")
        if record["chosen"].strip() == record["rejected"].strip():
            raise DataError(source, "chosen and rejected responses are identical")
        image_ref = record.get("image") or record.get("image_path")
        if not image_ref:
            raise DataError(source, "no image: the record needs 'image' (base64) or 'image_path'")
        image = load_image(image_ref, self.image_folder, source=source)
        question = {"role": "user", "content": f"{IMAGE_TAG}\n{record['question']}"}
        pair = {}
        for key in ("chosen", "rejected"):
            try:
                pair[key] = preprocess_conversation(
                    [question, {"role": "assistant", "content": record[key]}],
                    [image],
                    self.tokenizer,
                    self.image_processor,
                    query_num=self.query_num,
                    max_length=self.max_length,
                    sample_id=record.get("idx", position),
                    system_prompt=self.system_prompt,
                )
            except DataError as error:
                raise DataError(source, f"{key} response: {error.problem}") from error
        return pair

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        pair = (
            self._cache[index]
            if self._cache is not None
            else self._build(self.records[index], index)
        )
        return {"pair_index": index, **pair}


def collate_preference_pairs(items: Sequence[Mapping], *, pad_token_id: int = 0) -> dict:
    """``preference_collate`` plus ``pair_indices`` ([B] long) to look the reference log-probs up."""
    batch = preference_collate(items, pad_token_id=pad_token_id)
    batch["pair_indices"] = torch.tensor([item["pair_index"] for item in items])
    return batch


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
    chosen_rewards = beta * (policy_chosen - ref_chosen)  # [B]
    rejected_rewards = beta * (policy_rejected - ref_rejected)  # [B]
    if loss_type == "dpo":
        losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    elif loss_type == "nca":
        losses = (
            -F.logsigmoid(chosen_rewards)
            - 0.5 * F.logsigmoid(-chosen_rewards)
            - 0.5 * F.logsigmoid(-rejected_rewards)
        )
    else:
        raise ValueError(f"loss_type {loss_type!r} is not one of {LOSS_TYPES}")
    return PreferenceLoss(losses, chosen_rewards.detach(), rejected_rewards.detach())


# -- trainer ----------------------------------------------------------------------------------


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
