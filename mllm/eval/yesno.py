"""Yes/no accuracy on the exercise's SFT test format (``{id, image, conversations}``).

Answers are normalised (lower-case, stripped, leading yes/no); an answer that starts with neither
counts as wrong *and* is counted separately, so a model that stopped answering is visible.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mllm.atomic import write_json, write_jsonl
from mllm.data.errors import DataError
from mllm.data.images import load_image
from mllm.data.special_tokens import IMAGE_TAG
from mllm.eval.decoding import DecodeSettings, answer_questions
from mllm.family.base import LoadedModel

LEADING_WORD = re.compile(r"^\W*(yes|no)\b")


@dataclass(frozen=True)
class YesNoSettings(DecodeSettings):
    """The ``yesno`` config section: ``generation`` kwargs (greedy in the shipped configs), 16
    questions per batch, seed 0; ``from_dict(values, where=...)`` rejects unknown keys."""

    generation: dict
    batch_size: int = 16
    seed: int = 0


def normalise(answer: str) -> str | None:
    """'Yes.' -> 'yes', ' no, there is not' -> 'no', 'a dog' -> None."""
    match = LEADING_WORD.match(answer.strip().lower())
    return match.group(1) if match else None


def question_and_target(record: Mapping, source: str) -> tuple[str, str]:
    """The first user turn (image tag removed) and the assistant's yes/no answer of a test record."""
    turns = record.get("conversations") or []
    users = [t["content"] for t in turns if t.get("role") == "user"]
    answers = [t["content"] for t in turns if t.get("role") == "assistant"]
    if not users or not answers:
        raise DataError(source, "needs a user and an assistant turn")
    target = normalise(answers[0])
    if target is None:
        raise DataError(source, f"reference answer {answers[0]!r} is not yes/no")
    return users[0].replace(IMAGE_TAG, "").strip(), target


def score(predictions: Sequence[str | None], targets: Sequence[str]) -> dict:
    n = len(targets)
    correct = sum(p == t for p, t in zip(predictions, targets, strict=True))
    unparseable = sum(p is None for p in predictions)
    yes = sum(p == "yes" for p in predictions)
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "unparseable": unparseable,
        "unparseable_rate": unparseable / n if n else 0.0,
        "yes_rate": yes / n if n else 0.0,
    }


def evaluate_yesno(
    loaded: LoadedModel,
    records: Sequence[Mapping],
    *,
    image_folder: str | os.PathLike | None,
    settings: YesNoSettings,
    source: str,
    metrics_path: str | os.PathLike,
    answers_path: str | os.PathLike,
) -> dict:
    """Decode every test question (greedy by default) and write metrics + per-question answers."""
    pairs = [
        question_and_target(r, f"{source} record {i} (id {r.get('id', '?')!r})")
        for i, r in enumerate(records)
    ]
    images = [
        load_image(
            r["image"], image_folder, source=f"{source} record {i} (id {r.get('id', '?')!r})"
        )
        for i, r in enumerate(records)
    ]
    answers = answer_questions(loaded, [q for q, _ in pairs], images, settings, desc="yes/no")
    predictions = [normalise(a) for a in answers]
    metrics = score(predictions, [t for _, t in pairs])
    write_jsonl(
        answers_path,
        [
            {"id": r.get("id", i), "question": q, "answer": a, "prediction": p, "target": t}
            for i, (r, (q, t), a, p) in enumerate(
                zip(records, pairs, answers, predictions, strict=True)
            )
        ],
    )
    write_json(metrics_path, metrics)
    return metrics
