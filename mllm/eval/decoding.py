"""Batched decoding of a benchmark with one model and one decoding strategy.

Prompts come from the model's family, left-padded so a batch decodes exactly like one-by-one
calls (tested in the model tests); the output keeps the exercise's answer-file fields so its chair.py could read it too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.utils import send_to_device
from PIL import Image
from tqdm.auto import tqdm

from mllm.atomic import write_jsonl
from mllm.data.images import load_image
from mllm.eval.benchmark import read_benchmark
from mllm.family.base import LoadedModel
from mllm.settings import Settings


@dataclass(frozen=True)
class DecodeSettings(Settings):
    """How a set of questions is answered: HF ``generate`` kwargs, questions per batch, and the
    seed set once before the first batch (so sampling repeats exactly)."""

    generation: dict
    batch_size: int = 16
    seed: int = 0


def generate_answers(
    loaded: LoadedModel,
    questions: Sequence[str],
    images: Sequence[Image.Image],
    generation: dict,
    *,
    batch_size: int,
    desc: str = "decode",
) -> list[str]:
    """Answer each (question, image) pair with ``generation`` kwargs for HF ``generate``, the
    prompts, terminators and answer text being the model family's."""
    family = loaded.family
    terminators = family.terminator_ids(loaded)
    answers: list[str] = []
    for start in tqdm(range(0, len(questions), batch_size), desc=desc, unit="batch"):
        inputs = family.generation_inputs(
            loaded, questions[start : start + batch_size], images[start : start + batch_size]
        )
        generated = loaded.model.generate(
            **send_to_device(inputs, loaded.model.device),
            eos_token_id=terminators,
            pad_token_id=loaded.tokenizer.pad_token_id,
            **generation,
        )
        new_tokens = family.new_tokens(loaded, inputs, generated)  # [B, T]
        answers.extend(family.decode_answer(loaded, row) for row in new_tokens)
    return answers


def answer_questions(
    loaded: LoadedModel,
    questions: Sequence[str],
    images: Sequence[Image.Image],
    settings: DecodeSettings,
    *,
    desc: str,
) -> list[str]:
    """Seed torch, then :func:`generate_answers` in batches of ``settings.batch_size``: the loop
    shared by benchmark decoding, yes/no and grounding evaluation."""
    torch.manual_seed(settings.seed)
    return generate_answers(
        loaded, questions, images, settings.generation, batch_size=settings.batch_size, desc=desc
    )


def decode_benchmark(
    loaded: LoadedModel,
    benchmark_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    generation: dict,
    batch_size: int,
    seed: int,
    model_name: str,
    strategy: str,
    image_folder: str | os.PathLike | None = None,
) -> list[dict]:
    """Decode every benchmark question and write ``{question_id, image_id, question, answer,
    model, strategy}`` JSONL atomically. Image paths resolve against ``image_folder`` (default:
    the benchmark's own directory); long strings are base64, as in the exercise."""
    rows = read_benchmark(benchmark_path)
    folder = Path(image_folder) if image_folder is not None else Path(benchmark_path).parent
    images = [
        load_image(row["image"], folder, source=f"{benchmark_path}:{i + 1}")
        for i, row in enumerate(rows)
    ]
    answers = answer_questions(
        loaded,
        [row["question"] for row in rows],
        images,
        DecodeSettings(generation, batch_size, seed),
        desc=f"{model_name}/{strategy}",
    )
    results = [
        {
            "question_id": index,
            "image_id": row["image_id"],
            "question": row["question"],
            "answer": answer,
            "model": model_name,
            "strategy": strategy,
        }
        for index, (row, answer) in enumerate(zip(rows, answers, strict=True))
    ]
    write_jsonl(output_path, results)
    return results
