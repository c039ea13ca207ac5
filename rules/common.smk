"""Config validation and the helpers that map logical inputs to files in either world."""

import os
from pathlib import Path

from snakemake.utils import validate

validate(config, schema="../config/schema.yaml")

IS_DEMO = config["world"] == "demo"
DEMO_WORLD = "resources/demo_world"
STAGES = config["stages"]
STRATEGIES = list(config["decoding"]["strategies"])
THREADS = config["compute"]["threads"]

# Where each dataset lives inside the demo world (paths as the generator writes them).
DEMO_FILES = {
    "benchmark": "objhal_bench.jsonl",
    "instances": "annotations/instances_val.json",
    "captions": "annotations/captions_val.json",
    "pretrain": "pretrain_captions.json",
    "warmup_instances": "annotations/instances_train.json",
}
# And in the real world, after the download rules.
REAL_FILES = {
    "benchmark": "resources/benchmark/objhal_bench.jsonl",
    "instances": "resources/coco/annotations/instances_val2014.json",
    "captions": "resources/coco/annotations/captions_val2014.json",
}


def settings(*keys, default=None):
    """A config section for `params:`, keys sorted at every level. Snakemake compares params by
    repr, so merely reordering keys in the YAML must not rerun a job."""

    def canonical(value):
        if isinstance(value, dict):
            return {key: canonical(value[key]) for key in sorted(value)}
        if isinstance(value, list):
            return [canonical(item) for item in value]
        return value

    section = config
    for key in keys:
        if not isinstance(section, dict) or key not in section:
            return default
        section = section[key]
    return canonical(section)


def data_input(name):
    """The input a job needs to read dataset `name` (the file, or in the demo the world holding it).
    Downloads are ancient(): fetching a file again must not rerun the evaluations built on it.
    """
    return DEMO_WORLD if IS_DEMO else ancient(REAL_FILES[name])


def data_path(name):
    """The path a script reads for dataset `name`."""
    return f"{DEMO_WORLD}/{DEMO_FILES[name]}" if IS_DEMO else REAL_FILES[name]


def benchmark_image_folder(wildcards, input):
    """Folder that relative image paths in the benchmark resolve against."""
    if IS_DEMO:
        return input.benchmark  # the world directory
    return config["real"].get("benchmark_images") or str(Path(input.benchmark).parent)


def base_model_dir():
    return "results/models/base" if IS_DEMO else "resources/models/base"


def stage_model(wildcards):
    """Model directory of a stage (later stages add their training outputs here)."""
    base = base_model_dir() if IS_DEMO else ancient(base_model_dir())
    return {"base": base}[wildcards.stage]


def generation_kwargs(wildcards):
    return settings("decoding", "strategies", wildcards.strategy)


LIBRARY = Path(workflow.basedir, "mllm")


def library(*parts):
    """The library sources a job runs, declared as its inputs. Snakemake does not track imported code; it
    reruns a job whose input content changed (checksums, so a mere touch does not). Paths are
    relative to the working directory, which need not be the repository (tests use a scratch one).
    """
    files = []
    for part in parts:
        path = LIBRARY / part
        files += sorted(p for p in path.rglob("*.py")) if path.is_dir() else [path]
    return [os.path.relpath(p) for p in files]


def decode_outputs():
    return expand(
        "results/decode/{stage}/{strategy}.jsonl", stage=STAGES, strategy=STRATEGIES
    )


def chair_outputs():
    return expand(
        "results/chair/{stage}/{strategy}.json", stage=STAGES, strategy=STRATEGIES
    )
