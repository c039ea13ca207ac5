"""Image-token budget, before any GPU time: every sample counted with the family's real processor.

"Image features and image tokens do not match" is the failure users of every VLM trainer report
most; it comes from a sequence cut at ``max_length`` inside an image's tokens. This check runs the
same ``training_sample`` the stage will run, on the CPU, and refuses such a data set up front,
naming the sample, with the sequence-length distribution to choose ``max_length`` from.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from PIL import Image

from mllm.data.errors import DataError
from mllm.data.images import RECENT_IMAGES
from mllm.family.base import LoadedModel, Message


@dataclass(frozen=True)
class BudgetSample:
    """One conversation with its images, as the training stage will see it."""

    sample_id: int | str
    conversations: Sequence[Message]
    images: Sequence[Image.Image]


def distribution(values: Sequence[int]) -> dict:
    """min / median / p95 (nearest rank) / max of ``values``; all None when there are none."""
    if not values:
        return {"min": None, "median": None, "p95": None, "max": None}
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p95": ordered[math.ceil(0.95 * len(ordered)) - 1],
        "max": ordered[-1],
    }


def check_token_budget(
    loaded: LoadedModel,
    samples: Iterable[BudgetSample],
    *,
    max_length: int,
    refuse_over_length: bool = True,
    system_prompt: str | None = None,
) -> dict:
    """The data set's token budget under ``loaded``'s processor, as a JSON-able report.

    Raises ``DataError`` naming the first sample whose cut at ``max_length`` would fall inside
    image tokens, or, with ``refuse_over_length``, the first sample longer than ``max_length``
    at all (a cut response trains on a sentence that never ends).
    """
    family = loaded.family
    build = family.sample_builder(loaded, max_images=RECENT_IMAGES)
    lengths, image_tokens, over = [], [], []
    for sample in samples:
        whole = build(
            sample.conversations,
            sample.images,
            max_length=sys.maxsize,
            sample_id=sample.sample_id,
            system_prompt=system_prompt,
        )
        length = len(whole["input_ids"])
        if length > max_length:
            # the family's own truncation rule: DataError when the cut falls inside an image
            build(
                sample.conversations,
                sample.images,
                max_length=max_length,
                sample_id=sample.sample_id,
                system_prompt=system_prompt,
            )
            if refuse_over_length:
                raise DataError(
                    f"sample {sample.sample_id}",
                    f"{length} tokens exceed max_length {max_length} (refuse_over_length)",
                )
            over.append(sample.sample_id)
        lengths.append(length)
        image_tokens.append(sum(family.image_token_counts(loaded, sample.images)))
    return {
        "family": family.name,
        "samples": len(lengths),
        "max_length": max_length,
        "sequence_length": distribution(lengths),
        "image_tokens": distribution(image_tokens),
        "over_max_length": over,
        "processor": family.cache_identity(loaded),
    }
