"""Forward+backward time of candidate demo-size MLLMs on this machine (batch 16, CPU).

Prints parameter counts, seconds per training step and tokens/s for each variant so the demo
world's model size can be chosen from measurements rather than guesses. Run:

    .venv/bin/python bench/model_step.py [--batch 16] [--steps 10]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from mllm.model.config import MLLMConfig
from mllm.model.mllm import MLLMModel

CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"
IMAGE_SIZE, PATCH, VOCAB, TEXT_TOKENS = 64, 8, 1400, 48


def variants() -> dict[str, dict]:
    """The demo model as configured, and neighbours worth comparing it with."""
    demo = yaml.safe_load(CONFIG.read_text())["architecture"]
    return {
        "demo": demo,
        "demo-q64": {**demo, "query_num": 64},
        "demo-d96": {**demo, "hidden_size": 96, "intermediate_size": 256},
        "demo-d192": {**demo, "hidden_size": 192, "intermediate_size": 512},
    }


def build(architecture: dict) -> MLLMModel:
    architecture = dict(architecture)
    config = MLLMConfig(vocab_size=VOCAB, vision_config=architecture.pop("vision"), **architecture)
    torch.manual_seed(0)
    return MLLMModel(config)


def batch_for(model: MLLMModel, batch_size: int) -> dict:
    query_num = model.config.query_num
    length = TEXT_TOKENS + query_num
    grid = IMAGE_SIZE // PATCH
    input_ids = torch.randint(10, VOCAB, (batch_size, length))
    return dict(
        input_ids=input_ids,
        labels=input_ids,
        pixel_values=[[torch.randn(3, PATCH, grid * grid * PATCH)] for _ in range(batch_size)],
        tgt_sizes=[torch.tensor([[grid, grid]]) for _ in range(batch_size)],
        image_bound=[torch.tensor([[10, 10 + query_num]]) for _ in range(batch_size)],
    )


def time_steps(model: MLLMModel, batch: dict, steps: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    for step in range(steps + 2):  # two warm-up steps
        if step == 2:
            start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'variant':<10} {'params':>10} {'seq':>5} {'s/step':>8} {'tok/s':>9}")
    for name, architecture in variants().items():
        model = build(architecture)
        batch = batch_for(model, args.batch)
        seconds = time_steps(model, batch, args.steps)
        tokens = batch["input_ids"].numel()
        params = sum(p.numel() for p in model.parameters())
        print(
            f"{name:<10} {params:>10,} {batch['input_ids'].shape[1]:>5} {seconds:>8.3f} {tokens / seconds:>9.0f}"
        )


if __name__ == "__main__":
    main()
