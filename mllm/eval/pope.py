"""POPE evaluation: each question answered (greedy in the shipped configs), read with the official
rule, scored with the paper's metrics, and the answers the rule reads only by default counted.

The official rule (AoiDragon/POPE ``evaluate.py``; LLaVA's ``eval_pope.py``): keep the text before
the first ``.``, delete ``,``, split on single spaces; the answer is "no" iff a token is exactly
``No``, ``no`` or ``not``, else "yes". Nothing is unparseable there: "", "NO", "Nope" and "There
isn't one" all count as yes. So every answer is also read strictly (its first word yes or no,
any case); those that are neither are counted, and how many of them the rule read as yes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mllm.atomic import write_json, write_jsonl
from mllm.data.images import load_image
from mllm.data.pope import read_pope
from mllm.eval.decoding import DecodeSettings, answer_questions
from mllm.eval.yesno import normalise
from mllm.family.base import LoadedModel

NO_TOKENS = frozenset({"No", "no", "not"})


@dataclass(frozen=True)
class PopeEvalSettings(DecodeSettings):
    """The ``pope.eval`` config section: ``generation`` kwargs (greedy in the shipped configs),
    questions per batch, the seed, and ``prompt_suffix`` appended to each official question
    (none by default: the official text as it is; LLaVA appends an instruction)."""

    generation: dict
    batch_size: int = 16
    seed: int = 0
    prompt_suffix: str = ""


def official_answer(answer: str) -> str:
    """The official reading: 'Yes, there is.' -> 'yes', 'No, there is not.' -> 'no', '' -> 'yes'."""
    first_sentence = answer.split(".")[0]
    words = first_sentence.replace(",", "").split(" ")
    return "no" if NO_TOKENS.intersection(words) else "yes"


def score(predictions: Sequence[str], labels: Sequence[str], clear: Sequence[str | None]) -> dict:
    """The paper's metrics (positive class "yes") of official ``predictions`` against ``labels``,
    and the answers whose strict reading ``clear`` is neither yes nor no. A precision (or F1)
    with no predicted yes is 0, where the official script divides by zero."""
    pairs = list(zip(predictions, labels, strict=True))
    tp = sum(p == "yes" and t == "yes" for p, t in pairs)
    fp = sum(p == "yes" and t == "no" for p, t in pairs)
    tn = sum(p == "no" and t == "no" for p, t in pairs)
    fn = sum(p == "no" and t == "yes" for p, t in pairs)
    n = len(pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    unclear = [p for p, c in zip(predictions, clear, strict=True) if c is None]
    return {
        "n": n,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "accuracy": (tp + tn) / n if n else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "yes_ratio": (tp + fp) / n if n else 0.0,
        "unparseable": len(unclear),
        "unparseable_read_as_yes": sum(p == "yes" for p in unclear),
        # a clear yes/no the official rule reads the other way ("NO" -> yes)
        "official_disagrees": sum(
            c is not None and c != p for p, c in zip(predictions, clear, strict=True)
        ),
    }


def score_answers(rows: Sequence[Mapping]) -> dict:
    """Metrics of answer rows ``{answer, label}`` (the answers file this module writes)."""
    answers = [str(row["answer"]) for row in rows]
    return score(
        [official_answer(a) for a in answers],
        [row["label"] for row in rows],
        [normalise(a) for a in answers],
    )


def evaluate_pope(
    loaded: LoadedModel,
    questions: Mapping[str, str | os.PathLike],
    *,
    image_folder: str | os.PathLike | None,
    settings: PopeEvalSettings,
    stage: str,
    outputs: Mapping[str, tuple[str | os.PathLike, str | os.PathLike]],
) -> dict[str, dict]:
    """Answer the questions of every setting (``questions``: setting -> POPE file) and write each
    setting's metrics and per-question answers (``outputs``: setting -> (metrics, answers)).

    The settings share their images and positive questions, so each distinct (image, question)
    is answered once; answers do not depend on the batch they are in (left padding)."""
    records = {setting: read_pope(path) for setting, path in questions.items()}
    unique: dict[tuple[str, str], int] = {}
    images = []
    for setting, rows in records.items():
        for row in rows:
            key = (row["image"], f"{row['text']}{settings.prompt_suffix}")
            if key not in unique:
                unique[key] = len(unique)
                where = f"{questions[setting]}: question {row['question_id']}"
                images.append(load_image(row["image"], image_folder, source=where))
    answers = answer_questions(
        loaded, [prompt for _, prompt in unique], images, settings, desc=f"POPE {stage}"
    )
    results = {}
    for setting, rows in records.items():
        answered = [
            {
                "question_id": r["question_id"],
                "image_id": r.get("image_id"),
                "object": r.get("object"),
                "question": r["text"],
                "label": r["label"],
                "answer": answer,
                "prediction": official_answer(answer),
                "clear": normalise(answer),
            }
            for r in rows
            for answer in [answers[unique[r["image"], f"{r['text']}{settings.prompt_suffix}"]]]
        ]
        metrics_path, answers_path = outputs[setting]
        results[setting] = {"stage": stage, "setting": setting, **score_answers(answered)}
        write_jsonl(answers_path, answered)
        write_json(metrics_path, results[setting])
    return results
