"""How far does grounding SFT get in N steps? Train from a base model, score Acc@0.5, and say how
much the model looks at the image (issue 18's grounding study, docs/results.md).

    .venv/bin/python bench/grounding_steps.py --base resources/models/base --out /tmp/g \
        [--settings '{"max_steps": 500}'] [--threads 1] [--splits REC_refcoco_unc_val ...]

Run after `snakemake --cores 2 results/grounding/data/train.json` (the training records). The
settings are `grounding.training`'s (config/config.yaml) updated by `--settings`. Besides Acc@0.5
per split it prints the training loss of 64 training samples with their own images and with the
batch's images rolled by one: a model that has not learnt to read the box off the image scores
both alike.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from mllm.data.grounding import read_referents
from mllm.eval.grounding import GroundingEvalSettings, GroundingSplit, evaluate_grounding
from mllm.family.registry import load_model
from mllm.records import read_json_records
from mllm.train.datasets import SupervisedDataset
from mllm.train.settings import TrainSettings
from mllm.train.sft import train_sft

CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"
SPLITS = ("REC_refcoco_unc_val", "REC_refcocog_umd_test", "REC_refcoco+_unc_testB")


def image_reliance(loaded, train_file: Path, world: Path, samples: int = 64) -> tuple[float, float]:
    """Mean label loss of `samples` training records with their own images and with the images
    rolled by one within the batch."""
    records = read_json_records(train_file)[:samples]
    dataset = SupervisedDataset(
        records, loaded, max_length=256, image_folder=str(world), max_truncated_share=0.05
    )
    batch = loaded.family.collate(loaded, [dataset[i] for i in range(len(dataset))])
    labels = batch.pop("labels")  # [B, T], already aligned with the logits

    def loss(inputs) -> float:
        with torch.no_grad():
            logits = loaded.model(**inputs).logits.float()  # [B, T, V]
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten()).item()

    rolled = dict(batch)
    rolled["pixel_values"] = batch["pixel_values"][-1:] + batch["pixel_values"][:-1]
    return loss(batch), loss(rolled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, default=Path("resources/models/base"))
    parser.add_argument("--world", type=Path, default=Path("resources/world"))
    parser.add_argument("--data", type=Path, default=Path("results/grounding/data"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--settings", default="{}", help="JSON updating grounding.training")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS))
    parser.add_argument("--eval-only", action="store_true", help="score --out's trained model")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = yaml.safe_load(CONFIG.read_text())["grounding"]
    settings = {**config["training"], "save_steps": 0, "eval_steps": 0}
    settings.update(json.loads(args.settings))
    start = time.perf_counter()
    if not args.eval_only:
        train_sft(
            start_model_dir=args.base,
            train_file=args.data / "train.json",
            image_folder=args.world,
            settings=TrainSettings.from_dict(settings, where="--settings"),
            model_dir=args.out / "model",
            checkpoint_dir=args.out / "checkpoints",
            state_path=args.out / "trainer_state.json",
            metrics_path=args.out / "metrics.json",
        )
    result = {"settings": settings, "train_seconds": round(time.perf_counter() - start, 1)}
    loaded = load_model(args.out / "model")
    eval_settings = GroundingEvalSettings.from_dict(config["eval"], where="grounding.eval")
    splits = [
        GroundingSplit(
            labels={"split": name},
            referents=read_referents(
                args.world / "grounding" / f"{name}.jsonl", image_folder=args.world
            ),
            metrics_path=args.out / f"{name}.json",
            items_path=args.out / f"{name}.jsonl",
        )
        for name in args.splits
    ]
    for name, metrics in zip(
        args.splits,
        evaluate_grounding(loaded, splits, image_folder=args.world, settings=eval_settings),
        strict=True,
    ):
        result[name] = {
            "acc_at_0_5": metrics["acc_at_0_5"],
            "parse_failures": metrics["parse_failures"],
        }
    own, rolled = image_reliance(loaded, args.data / "train.json", args.world)
    result["loss_own_images"], result["loss_rolled_images"] = round(own, 3), round(rolled, 3)
    print(json.dumps(result, indent=1))
    (args.out / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
