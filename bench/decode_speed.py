"""Captions per second of batched decoding vs one-by-one, per strategy, on the demo benchmark.

Run after the demo base model exists (`snakemake --cores 2 resources/models/base`):

    .venv/bin/python bench/decode_speed.py [--model resources/models/base] [--images 32]
        [--threads 1] [--repeats 3] [--answers answers.json]

The strategies are the workflow's own presets (config/config.yaml ``decoding.strategies``).
Prints captions/s at batch 1 and batch 16 and their ratio, once per repeat (the repeats
interleave batch 1 and batch 16, so a neighbour's load hits both alike); timings are noisy on a
shared CPU, so only the ratio within one run means much. ``--answers`` writes every decoded
answer per strategy and batch size, to check that a speed-up leaves the outputs byte-identical.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from mllm.data.images import load_image
from mllm.eval.decoding import generate_answers, read_benchmark
from mllm.family.registry import load_model

CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"
BATCH_SIZES = (1, 16)


def timed_answers(loaded, questions, images, generation, batch_size) -> tuple[float, list[str]]:
    """Captions per second and the answers, seeded as a decoding job seeds them."""
    torch.manual_seed(0)
    start = time.perf_counter()
    answers = generate_answers(
        loaded, questions, images, generation, batch_size=batch_size, desc=f"batch {batch_size}"
    )
    return len(questions) / (time.perf_counter() - start), answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resources/models/base")
    parser.add_argument("--benchmark", default="resources/world/objhal_bench.jsonl")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--strategies", nargs="+", default=["greedy", "sampling", "beam"])
    parser.add_argument("--answers", help="write the answers here (JSON) to compare runs")
    args = parser.parse_args()
    strategies = yaml.safe_load(CONFIG.read_text())["decoding"]["strategies"]
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    rows = read_benchmark(args.benchmark)[: args.images]
    folder = args.benchmark.rsplit("/", 1)[0]
    images = [load_image(row["image"], folder, source="bench") for row in rows]
    questions = [row["question"] for row in rows]
    answers: dict[str, dict[int, list[str]]] = {}
    print(f"{'strategy':<10} {'batch 1':>10} {'batch 16':>10} {'ratio':>7}   (captions/s)")
    for _ in range(args.repeats):
        for name in args.strategies:
            speed = {}
            for batch_size in BATCH_SIZES:
                speed[batch_size], decoded = timed_answers(
                    loaded, questions, images, strategies[name], batch_size
                )
                answers.setdefault(name, {})[batch_size] = decoded
            single, batched = speed[BATCH_SIZES[0]], speed[BATCH_SIZES[-1]]
            print(f"{name:<10} {single:>10.2f} {batched:>10.2f} {batched / single:>7.2f}")
    if args.answers:
        with open(args.answers, "w") as file:
            json.dump(answers, file, indent=1)


if __name__ == "__main__":
    main()
