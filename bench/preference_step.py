"""Cost of one preference training step (policy forward/backward on [chosen; rejected], reference
log-probs from the cache) relative to one SFT step on the same concatenated batch.

Run after `make report` (uses the demo base model and preference data):

    .venv/bin/python bench/preference_step.py [--pairs 8] [--steps 10]

The point of the cache: no reference forward during training, so the ratio should stay near 1.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch

from mllm.data.collators import sft_collate
from mllm.family.registry import load_model
from mllm.model.llm import supervised_token_loss
from mllm.preference.dataset import PreferenceDataset, collate_preference_pairs
from mllm.preference.logps import concatenated_logps
from mllm.preference.losses import preference_loss
from mllm.preference.reference_cache import score_reference
from mllm.preference.settings import PreferenceSettings


def interleaved_medians(steps: dict, rounds: int) -> dict[str, float]:
    """Median seconds of each step, timed in alternation so that load from other processes on a
    shared machine falls on all of them alike (timing one step kind after the other once gave a
    5x "ratio" that was only a busier minute)."""
    for step in steps.values():
        step()  # warm-up
    seconds = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="results/models/base")
    parser.add_argument("--data", default="resources/demo_world/preference_train.json")
    parser.add_argument("--images", default="resources/demo_world")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(2)
    loaded = load_model(args.model, device="cpu")
    dataset = PreferenceDataset.from_file(
        args.data, loaded, max_length=256, image_folder=args.images
    )
    subset = [dataset[i] for i in range(args.pairs)]
    reference = score_reference(
        loaded, torch.utils.data.Subset(dataset, range(args.pairs)), args.pairs
    )
    model = loaded.model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    collate = partial(loaded.family.collate, loaded)
    pairs_batch = collate_preference_pairs(subset, collate=collate)
    rows = [pair["chosen"] for pair in subset] + [pair["rejected"] for pair in subset]
    sft_batch = sft_collate(rows, collate=collate, max_length=256)
    sft_labels = sft_batch.pop("labels")
    settings = PreferenceSettings(loss_type="dpo", beta=0.1)

    def sft_step():
        logits, labels = loaded.family.supervised_logits(model, sft_batch, sft_labels)
        supervised_token_loss(logits, labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def preference_step():
        policy = concatenated_logps(model, pairs_batch).score(False)
        ref_chosen, ref_rejected = reference.lookup(pairs_batch["pair_indices"], False)
        n = args.pairs
        preference_loss(
            policy[:n], policy[n:], ref_chosen, ref_rejected, settings.beta, "dpo"
        ).losses.mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    medians = interleaved_medians({"sft": sft_step, "preference": preference_step}, args.steps)
    sft, preference = medians["sft"], medians["preference"]
    print(f"rows per batch: {2 * args.pairs}, tokens: {sft_batch['input_ids'].numel()}")
    print(f"SFT step        {sft * 1000:8.1f} ms (median of {args.steps})")
    print(f"preference step {preference * 1000:8.1f} ms   ratio {preference / sft:.2f}x")


if __name__ == "__main__":
    main()
