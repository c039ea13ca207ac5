"""Confidence intervals for the report's headline numbers.

The evaluation sets are small (300 captions, a few hundred questions or referents), so a
difference of a few points between stages can be noise; every rate in the headline table carries
a 95 % percentile-bootstrap interval. Resampling whole units (a caption, a question, a referent)
keeps what belongs together together: CHAIRi's mentions of one caption move as a block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 1000
SEED = 0
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap interval, on the same scale (e.g. percent)."""

    value: float
    low: float
    high: float


def bootstrap_ratio(
    numerators: Sequence[float],
    denominators: Sequence[float] | None = None,
    *,
    scale: float = 1.0,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> Estimate:
    """scale · Σnumerators / Σdenominators over units, with a percentile-bootstrap interval.

    Without denominators this is a mean (a rate of 0/1 outcomes). A resample whose denominator
    sums to zero scores 0, as the metric itself does (CHAIRi of captions without mentions).
    Seeded: the same data always gives the same interval.
    """
    num = np.asarray(numerators, dtype=float)
    den = np.ones_like(num) if denominators is None else np.asarray(denominators, dtype=float)
    if num.shape != den.shape or num.ndim != 1 or not len(num):
        raise ValueError("need one numerator and one denominator per unit, at least one unit")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(num), size=(n_resamples, len(num)))
    totals, counts = num[picks].sum(axis=1), den[picks].sum(axis=1)
    ratios = np.divide(totals, counts, out=np.zeros_like(totals), where=counts > 0)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(ratios, [tail, 100 - tail])
    value = num.sum() / den.sum() if den.sum() > 0 else 0.0
    return Estimate(scale * float(value), scale * float(low), scale * float(high))


def chair_estimates(per_caption: Sequence[Mapping], **options) -> dict[str, Estimate]:
    """CHAIRs and CHAIRi (percent) with intervals, from the per-caption details of a CHAIR JSON."""
    hallucinated = [len(c["hallucinated_indices"]) for c in per_caption]
    mentions = [len(c["mention_indices"]) for c in per_caption]
    return {
        "CHAIRs": bootstrap_ratio([h > 0 for h in hallucinated], scale=100, **options),
        "CHAIRi": bootstrap_ratio(hallucinated, mentions, scale=100, **options),
    }


def pope_estimates(answers: Sequence[Mapping], **options) -> dict[str, Estimate]:
    """POPE's metrics with intervals, from answer rows ``{prediction, label}`` (mllm.eval.pope).
    Each is a ratio of sums over questions (F1 = 2TP / (2TP + FP + FN)), so the questions are
    resampled as units, the same resamples for every metric."""
    said_yes = [a["prediction"] == "yes" for a in answers]
    is_yes = [a["label"] == "yes" for a in answers]
    tp = [s and y for s, y in zip(said_yes, is_yes, strict=True)]
    errors = [s != y for s, y in zip(said_yes, is_yes, strict=True)]
    return {
        "accuracy": bootstrap_ratio([not e for e in errors], **options),
        "precision": bootstrap_ratio(tp, said_yes, **options),
        "recall": bootstrap_ratio(tp, is_yes, **options),
        "f1": bootstrap_ratio(
            [2 * t for t in tp], [2 * t + e for t, e in zip(tp, errors, strict=True)], **options
        ),
        "yes_ratio": bootstrap_ratio(said_yes, **options),
    }


def rate_estimate(outcomes: Sequence[bool], **options) -> Estimate:
    """A 0/1 rate (accuracy, Acc@0.5) with its interval."""
    return bootstrap_ratio([bool(o) for o in outcomes], **options)
