"""Captions per second of batched decoding vs one-by-one, per strategy, on the demo benchmark.

Run after `make report` (it reads the demo base model and benchmark):

    .venv/bin/python bench/decode_speed.py [--model results/models/base] [--images 32]

Prints captions/s at batch 1 and batch 16 and their ratio; timings are noisy on a shared CPU,
so only the ratio within one run means much.
"""

from __future__ import annotations

import argparse
import time

import torch

from mllm.data.images import load_image
from mllm.eval.decoding import generate_answers, read_benchmark
from mllm.family.registry import load_model

STRATEGIES = {
    "greedy": dict(do_sample=False, max_new_tokens=64),
    "sampling": dict(do_sample=True, top_p=0.8, top_k=100, temperature=0.7, max_new_tokens=64),
    "beam3": dict(num_beams=3, do_sample=False, max_new_tokens=64),
}


def captions_per_second(loaded, questions, images, generation, batch_size) -> float:
    torch.manual_seed(0)
    start = time.perf_counter()
    generate_answers(
        loaded, questions, images, generation, batch_size=batch_size, desc=f"batch {batch_size}"
    )
    return len(questions) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="results/models/base")
    parser.add_argument("--benchmark", default="resources/demo_world/objhal_bench.jsonl")
    parser.add_argument("--images", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(2)
    loaded = load_model(args.model)
    rows = read_benchmark(args.benchmark)[: args.images]
    folder = args.benchmark.rsplit("/", 1)[0]
    images = [load_image(row["image"], folder, source="bench") for row in rows]
    questions = [row["question"] for row in rows]
    print(f"{'strategy':<10} {'batch 1':>10} {'batch 16':>10} {'ratio':>7}   (captions/s)")
    for name, generation in STRATEGIES.items():
        single = captions_per_second(loaded, questions, images, generation, 1)
        batched = captions_per_second(loaded, questions, images, generation, 16)
        print(f"{name:<10} {single:>10.1f} {batched:>10.1f} {batched / single:>7.1f}")


if __name__ == "__main__":
    main()
