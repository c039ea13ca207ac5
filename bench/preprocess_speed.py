"""Samples per second of a training data set's preprocessing, and a digest of every sample.

Run on the demo world once its base model exists (or with a fresh model of the tokenizer and the
config's architecture: ``--tokenizer results/tokenizer``):

    PYTHONPATH=. .venv/bin/python bench/preprocess_speed.py [--model resources/models/base]
        [--world resources/world] [--data pretrain_captions.json] [--kind sft]
        [--image-folder DIR] [--records 2000] [--repeats 3]

Times two ways of preprocessing the first ``--records`` records: ``dataset``, as the training
jobs do it (``SupervisedDataset`` / ``PreferenceDataset``), and ``one by one``, each record's
images decoded anew and ``training_sample`` called per sample, the straightforward path. Each
repeat runs both (interleaved, so a neighbour's load hits both alike) and prints samples/s by
the wall clock and by this process's CPU time; on a shared machine only the CPU figure and the
ratio mean much. Then it checks the two ways give equal samples (every tensor and field) and
prints a sha256 over the dataset's samples: run it on two checkouts (``PYTHONPATH=`` each) to
check that a change leaves every sample bit-identical.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

import torch
import yaml
from transformers import AutoTokenizer

from mllm.data.images import load_image
from mllm.data.preprocess import sft_image_refs
from mllm.data.special_tokens import IMAGE_TAG
from mllm.demo.base_model import base_model_config
from mllm.family.own import OwnFamily
from mllm.family.registry import load_model
from mllm.model.mllm import MLLMModel
from mllm.preference.dataset import PreferenceDataset, image_reference
from mllm.records import read_json_records
from mllm.train.datasets import SupervisedDataset, rendered_boxes

CONFIG = Path(__file__).resolve().parents[1] / "config" / "config.yaml"


def fresh_model(tokenizer_dir: str, config_path: str):
    """The demo's base model architecture, untrained, with the world's tokenizer: preprocessing
    reads only the tokenizer and the image settings."""
    config = yaml.safe_load(Path(config_path).read_text())
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model_config = base_model_config(tokenizer, config["architecture"], config["image_processing"])
    return OwnFamily().wrap(MLLMModel(model_config), tokenizer)


def dataset_samples(kind: str, records: list, loaded, folder: str, max_length: int) -> list:
    options = dict(max_length=max_length, image_folder=folder)
    if kind == "sft":
        data = SupervisedDataset(records, loaded, max_truncated_share=1.0, **options)
    else:
        data = PreferenceDataset(records, loaded, **options)
    return [data[index] for index in range(len(data))]


def one_by_one_samples(kind: str, records: list, loaded, folder: str, max_length: int) -> list:
    """Each record as the datasets built it before images were shared: decoded anew per record,
    ``training_sample`` per sample."""
    family, samples = loaded.family, []
    for index, record in enumerate(records):
        if kind == "sft":
            source = f"sample {record.get('id', '?')}"
            images = [load_image(ref, folder, source=source) for ref in sft_image_refs(record)]
            conversations = rendered_boxes(loaded, record["conversations"], images, source)
            samples.append(
                family.training_sample(
                    loaded,
                    conversations,
                    images,
                    max_length=max_length,
                    sample_id=record.get("id", "?"),
                )
            )
            continue
        image = load_image(image_reference(record), folder, source=f"pair {index}")
        question = {"role": "user", "content": f"{IMAGE_TAG}\n{record['question']}"}
        pair = {"pair_index": index}
        for key in ("chosen", "rejected"):
            answer = {"role": "assistant", "content": record[key]}
            pair[key] = family.training_sample(
                loaded,
                [question, answer],
                [image],
                max_length=max_length,
                sample_id=record.get("idx", index),
            )
        samples.append(pair)
    return samples


def leaves(value, path: str = ""):
    """``(path, leaf)`` of every tensor and plain value in a sample, in a fixed order."""
    if isinstance(value, dict):
        for key in sorted(value):
            yield from leaves(value[key], f"{path}/{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from leaves(item, f"{path}[{index}]")
    else:
        yield path, value


def equal(left, right) -> bool:
    """Same structure, every tensor equal in dtype, shape and value, every plain value equal."""
    left, right = list(leaves(left)), list(leaves(right))
    if len(left) != len(right):
        return False
    for (path_a, a), (path_b, b) in zip(left, right, strict=True):
        if path_a != path_b or type(a) is not type(b):
            return False
        if isinstance(a, torch.Tensor):
            if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
                return False
        elif a != b:
            return False
    return True


def digest(samples: list) -> str:
    """sha256 over every sample's leaves: path, dtype, shape and bytes of each tensor."""
    hasher = hashlib.sha256()
    for sample in samples:
        for path, leaf in leaves(sample):
            hasher.update(path.encode())
            if isinstance(leaf, torch.Tensor):
                hasher.update(f"{leaf.dtype}{tuple(leaf.shape)}".encode())
                hasher.update(leaf.contiguous().numpy().tobytes())
            else:
                hasher.update(repr(leaf).encode())
    return hasher.hexdigest()


def timed(build, *args) -> tuple[float, float, list]:
    """Seconds by the wall clock and by this process's CPU, and the samples."""
    wall, cpu = time.perf_counter(), time.process_time()
    samples = build(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model folder (default: resources/models/base)")
    parser.add_argument("--tokenizer", help="instead of --model: a fresh model of this tokenizer")
    parser.add_argument("--config", default=str(CONFIG), help="architecture for --tokenizer")
    parser.add_argument("--world", default="resources/world")
    parser.add_argument("--data", default="pretrain_captions.json", help="under --world")
    parser.add_argument("--image-folder", help="the records' image folder (default: --world)")
    parser.add_argument("--kind", choices=("sft", "preference"), default="sft")
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as every workflow job runs
    torch.set_num_threads(1)
    if args.tokenizer:
        loaded = fresh_model(args.tokenizer, args.config)
    else:
        loaded = load_model(args.model or "resources/models/base", device="cpu")
    records = read_json_records(Path(args.world, args.data))[: args.records]
    folder = args.image_folder or args.world
    count = len(records) * (2 if args.kind == "preference" else 1)
    ways = {"dataset": dataset_samples, "one by one": one_by_one_samples}
    print(f"{count} samples of {args.data} ({args.kind}); samples/s by wall clock and CPU time")
    results = {}
    for _ in range(args.repeats):
        for name, build in ways.items():
            wall, cpu, results[name] = timed(
                build, args.kind, records, loaded, folder, args.max_length
            )
            print(f"{name:<12} {count / wall:>9.1f} wall {count / cpu:>9.1f} cpu")
    print("identical:", equal(results["dataset"], results["one by one"]))
    print("digest:", digest(results["dataset"]))


if __name__ == "__main__":
    main()
