"""Grounding Precision@1 (Acc@0.5) by Qwen-VL's ``eval_mm/evaluate_grounding.py`` protocol.

An answer's box is the first ``(x1,y1),(x2,y2)`` in it, on the 0..999 grid; it is scaled to
pixels by ``coordinate / 999 · W`` (x) or ``· H`` (y) — Qwen-VL divides by 999 although
training encodes with ``int(1000·x/W)``, a 0.1 % stretch kept here so numbers stay comparable —
and is a hit when its IoU with the pixel ground truth is at least 0.5.

Two deliberate differences from Qwen-VL, both lenient towards the answer and both documented in
the report: swapped corners are sorted per axis (Qwen-VL would score an inverted box), and
out-of-grid values are clamped to 0..999. Like Qwen-VL, an unparseable answer stays in the
denominator as a miss (some exercise forks dropped such items, inflating accuracy); unlike
Qwen-VL, the parse-failure rate is reported next to the accuracy.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mllm.atomic import write_json, write_jsonl
from mllm.data.grounding import GRID_SIZE, Box, Referent, grounding_eval_question
from mllm.data.images import LazyImages
from mllm.eval.decoding import DecodeSettings, answer_questions
from mllm.model.io import LoadedModel

HIT_IOU = 0.5
GRID_MAX = GRID_SIZE - 1  # Qwen-VL's divisor for grid -> pixels
_BOX_PATTERN = re.compile(r"\((.*?)\),\((.*?)\)")  # Qwen-VL's, first match only


@dataclass(frozen=True)
class GroundingEvalSettings(DecodeSettings):
    """The ``grounding.eval`` settings: ``generation`` kwargs, 32 questions per batch, seed 0;
    ``from_dict(values, where=...)`` rejects unknown keys."""

    generation: dict
    batch_size: int = 32
    seed: int = 0


def parse_box(text: str) -> Box | None:
    """The first ``(x1,y1),(x2,y2)`` of an answer as grid coordinates, corners sorted per axis
    and clamped to 0..999; None when there is no such pair of two finite numbers each."""
    match = _BOX_PATTERN.search(text)
    if not match:
        return None
    try:
        corners = [[float(part) for part in group.split(",")] for group in match.groups()]
    except ValueError:
        return None
    if any(len(corner) != 2 for corner in corners):
        return None
    (xa, ya), (xb, yb) = corners
    if not all(map(math.isfinite, (xa, ya, xb, yb))):
        return None
    sorted_box = (min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))
    return tuple(min(float(GRID_MAX), max(0.0, v)) for v in sorted_box)


def box_to_pixels(box: Sequence[float], width: int, height: int) -> Box:
    """Grid box -> pixel box, dividing by 999 as Qwen-VL does."""
    x0, y0, x1, y1 = box
    return (
        x0 / GRID_MAX * width,
        y0 / GRID_MAX * height,
        x1 / GRID_MAX * width,
        y1 / GRID_MAX * height,
    )


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes; 0 when they only touch or both are empty."""
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = inter_w * inter_h
    union = _area(a) + _area(b) - intersection
    return intersection / union if union > 0 else 0.0


def _area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def score_split(answers: Sequence[str], referents: Sequence[Referent]) -> dict:
    """Acc@0.5 of answers aligned one to one with referents.

    Returns ``{n, hits, acc_at_0_5, parse_failures, parse_failure_rate, mean_iou, items}``;
    unparseable answers are misses with IoU 0 in every denominator. ``items`` has one row per
    referent (image, expression, answer, gt_box, pred_box in pixels or None, iou, hit) for the
    report's examples.
    """
    if len(answers) != len(referents):
        raise ValueError(f"{len(answers)} answers for {len(referents)} referents")
    if not referents:
        raise ValueError("no referents to score")
    items = [
        _score_item(answer, referent) for answer, referent in zip(answers, referents, strict=True)
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


def _score_item(answer: str, referent: Referent) -> dict:
    grid_box = parse_box(answer)
    predicted = (
        None if grid_box is None else box_to_pixels(grid_box, referent.width, referent.height)
    )
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


def evaluate_grounding(
    loaded: LoadedModel,
    referents: Sequence[Referent],
    *,
    image_folder: str | os.PathLike | None,
    settings: GroundingEvalSettings,
    labels: dict,
    metrics_path: str | os.PathLike,
    items_path: str | os.PathLike,
) -> dict:
    """Answer every referent's evaluation question and score the split.

    Writes the metrics (``labels`` such as stage, dataset and split, plus :func:`score_split`'s
    counts) as JSON and one row per referent as JSONL, for the report's tables and examples.
    """
    questions = [grounding_eval_question(r.expression) for r in referents]
    images = LazyImages(
        [r.image for r in referents], image_folder, [r.source_line for r in referents]
    )
    answers = answer_questions(loaded, questions, images, settings, desc="grounding")
    scored = score_split(answers, referents)
    items = scored.pop("items")
    metrics = {**labels, **scored, "skipped": getattr(referents, "skipped", {})}
    write_jsonl(items_path, items)
    write_json(metrics_path, metrics)
    return metrics
