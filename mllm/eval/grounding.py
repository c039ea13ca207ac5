"""Grounding Precision@1 (Acc@0.5) by Qwen-VL's ``eval_mm/evaluate_grounding.py`` protocol.

The model's family reads an answer's box back into pixels of the image (``ModelFamily.parse_box``,
its declared convention; the own family's is Qwen-VL's, with its /999 scale quirk, see
``mllm.family.own``); it is a hit when its IoU with the pixel ground truth is at least 0.5.

Like Qwen-VL, an unparseable answer stays in the denominator as a miss (some exercise forks dropped such items, inflating accuracy); unlike
Qwen-VL, the parse-failure rate is reported next to the accuracy.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from mllm.atomic import atomic_files, write_json, write_jsonl
from mllm.data.grounding import Box, Referent, grounding_eval_question
from mllm.data.images import LazyImages
from mllm.eval.decoding import DecodeSettings, answer_questions
from mllm.family.base import LoadedModel

HIT_IOU = 0.5

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroundingEvalSettings(DecodeSettings):
    """The ``grounding.eval`` settings: ``generation`` kwargs, 32 questions per batch, seed 0;
    ``from_dict(values, where=...)`` rejects unknown keys."""

    generation: dict
    batch_size: int = 32
    seed: int = 0


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes; 0 when they only touch or both are empty."""
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = inter_w * inter_h
    union = _area(a) + _area(b) - intersection
    return intersection / union if union > 0 else 0.0


def _area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def score_split(
    answers: Sequence[str], predicted: Sequence[Box | None], referents: Sequence[Referent]
) -> dict:
    """Acc@0.5 of answers and their parsed pixel boxes (None: no box) aligned one to one with
    referents.

    Returns ``{n, hits, acc_at_0_5, parse_failures, parse_failure_rate, mean_iou, items}``;
    unparseable answers are misses with IoU 0 in every denominator. ``items`` has one row per
    referent (image, expression, answer, gt_box, pred_box in pixels or None, iou, hit) for the
    report's examples.
    """
    if not len(answers) == len(predicted) == len(referents):
        raise ValueError(
            f"{len(answers)} answers and {len(predicted)} boxes for {len(referents)} referents"
        )
    if not referents:
        raise ValueError("no referents to score")
    items = [
        _score_item(answer, box, referent)
        for answer, box, referent in zip(answers, predicted, referents, strict=True)
    ]
    n = len(items)
    hits = sum(item["hit"] for item in items)
    failures = sum(item["pred_box"] is None for item in items)
    return {
        "n": n,
        "hits": hits,
        "acc_at_0_5": hits / n,
        "parse_failures": failures,
        "parse_failure_rate": failures / n,
        "mean_iou": sum(item["iou"] for item in items) / n,
        "items": items,
    }


def _score_item(answer: str, predicted: Box | None, referent: Referent) -> dict:
    overlap = 0.0 if predicted is None else iou(predicted, referent.bbox_xyxy_px)
    return {
        "image": referent.image,
        "expression": referent.expression,
        "answer": answer,
        "gt_box": list(referent.bbox_xyxy_px),
        "pred_box": None if predicted is None else list(predicted),
        "iou": overlap,
        "hit": overlap >= HIT_IOU,
    }


@dataclass(frozen=True)
class GroundingSplit:
    """One split a grounding job evaluates: its labels (stage, dataset, split), its referents and
    the metrics JSON and per-referent JSONL it writes."""

    labels: dict
    referents: Sequence[Referent]
    metrics_path: str | os.PathLike
    items_path: str | os.PathLike


def evaluate_grounding(
    loaded: LoadedModel,
    splits: Sequence[GroundingSplit],
    *,
    image_folder: str | os.PathLike | None,
    settings: GroundingEvalSettings,
) -> list[dict]:
    """Answer every referent's evaluation question and score each split, with one loaded model.

    Each split is decoded on its own (torch seeded per split), so its files are those a job of
    that split alone would write: the metrics (``labels`` plus :func:`score_split`'s counts) as
    JSON and one row per referent as JSONL, for the report's tables and examples. Every file is
    written at the end, together: a split that fails (an unreadable image) leaves no output of
    any split. Returns the metrics per split.
    """
    results = []
    for split in splits:
        started = time.perf_counter()
        metrics, items = _score_referents(loaded, split, image_folder, settings)
        log.info(
            "%s: Acc@0.5 %.4f on %d referents in %.1f s",
            "/".join(map(str, split.labels.values())),
            metrics["acc_at_0_5"],
            metrics["n"],
            time.perf_counter() - started,
        )
        results.append((metrics, items))
    paths = [path for split in splits for path in (split.metrics_path, split.items_path)]
    with atomic_files(paths) as scratches:
        for (metrics, items), metrics_file, items_file in zip(
            results, scratches[::2], scratches[1::2], strict=True
        ):
            write_json(metrics_file, metrics)
            write_jsonl(items_file, items)
    return [metrics for metrics, _ in results]


def _score_referents(
    loaded: LoadedModel,
    split: GroundingSplit,
    image_folder: str | os.PathLike | None,
    settings: GroundingEvalSettings,
) -> tuple[dict, list[dict]]:
    referents = split.referents
    questions = [grounding_eval_question(r.expression) for r in referents]
    images = LazyImages(
        [r.image for r in referents], image_folder, [r.source_line for r in referents]
    )
    answers = answer_questions(loaded, questions, images, settings, desc="grounding")
    predicted = [
        loaded.family.parse_box(loaded, answer, images[index])
        for index, answer in enumerate(answers)
    ]
    scored = score_split(answers, predicted, referents)
    items = scored.pop("items")
    return {**split.labels, **scored, "skipped": getattr(referents, "skipped", {})}, items
