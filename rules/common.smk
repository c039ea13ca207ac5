"""Config validation and the helpers that map logical inputs to files in either world."""

import os
from pathlib import Path

from snakemake.utils import validate

validate(config, schema="../config/schema.yaml")

IS_DEMO = config["world"] == "demo"
DEMO_WORLD = "resources/demo_world"
SFT_RUNS = list(config.get("sft", {}))
PREFERENCE = config.get("preference")
# One preference run per loss × beta, named like a stage: "dpo_nll_beta0.1".
PREFERENCE_RUNS = (
    {
        f"{name}_beta{beta}": {**spec, "beta": beta}
        for name, spec in PREFERENCE["losses"].items()
        for beta in PREFERENCE["betas"]
    }
    if PREFERENCE
    else {}
)
STAGES = config["stages"] + [
    run for run in PREFERENCE_RUNS if run not in config["stages"]
]
for _stage in STAGES:
    if _stage != "base" and _stage not in SFT_RUNS and _stage not in PREFERENCE_RUNS:
        raise ValueError(
            f"config stages: {_stage!r} is neither 'base' nor an 'sft' or 'preference' run"
        )
if PREFERENCE and PREFERENCE["start"] != "base" and PREFERENCE["start"] not in SFT_RUNS:
    raise ValueError(f"config preference.start: unknown stage {PREFERENCE['start']!r}")
for _run, _spec in config.get("sft", {}).items():
    if _spec["start"] != "base" and _spec["start"] not in SFT_RUNS:
        raise ValueError(f"config sft.{_run}.start: unknown stage {_spec['start']!r}")
STRATEGIES = list(config["decoding"]["strategies"])
THREADS = config["compute"]["threads"]

# Where each dataset lives inside the demo world (paths as the generator writes them).
DEMO_FILES = {
    "benchmark": "objhal_bench.jsonl",
    "instances": "annotations/instances_val.json",
    "captions": "annotations/captions_val.json",
    "pretrain": "pretrain_captions.json",
    "warmup_instances": "annotations/instances_train.json",
    "sft_train": "sft/train.json",
    "sft_test": "sft/test.json",
    "preference": "preference_train.json",
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


def nltk_data_input():
    """nltk's reference data, fetched by a rule when the config asks for the `nltk` analyzer."""
    return ["resources/nltk_data"] if config["chair"].get("analyzer") == "nltk" else []


def data_input(name):
    """The input a job needs to read dataset `name` (the file, or in the demo the world holding it).
    Downloads are ancient(): fetching a file again must not rerun the evaluations built on it.
    """
    return DEMO_WORLD if IS_DEMO else ancient(REAL_FILES[name])


def data_path(name):
    """The path a script reads for dataset `name`."""
    return f"{DEMO_WORLD}/{DEMO_FILES[name]}" if IS_DEMO else REAL_FILES[name]


def sft_data(name):
    """SFT train/test file: in the demo world, or where the real config points."""
    return data_path(name) if IS_DEMO else config["real"].get(name)


def sft_inputs():
    """What SFT jobs read: the demo world, or the real train/test files."""
    if IS_DEMO:
        return [DEMO_WORLD]
    return [
        config["real"][key]
        for key in ("sft_train", "sft_test")
        if key in config["real"]
    ]


def sft_image_folder(wildcards, input):
    return input.data[0] if IS_DEMO else config["real"]["sft_images"]


def benchmark_image_folder(wildcards, input):
    """Folder that relative image paths in the benchmark resolve against."""
    if IS_DEMO:
        return input.benchmark  # the world directory
    return config["real"].get("benchmark_images") or str(Path(input.benchmark).parent)


def base_model_dir():
    return "results/models/base" if IS_DEMO else "resources/models/base"


def model_of(stage):
    """Model directory of a stage: the base model, or a training run's output."""
    if stage == "base":
        return base_model_dir() if IS_DEMO else ancient(base_model_dir())
    return f"results/models/{stage}"


def stage_model(wildcards):
    return model_of(wildcards.stage)


def sft_start_model(wildcards):
    return model_of(config["sft"][wildcards.run]["start"])


def sft_settings(wildcards):
    return settings("sft", wildcards.run, "training")


def generation_kwargs(wildcards):
    return settings("decoding", "strategies", wildcards.strategy)


LIBRARY = (
    Path(workflow.current_basedir).parent / "mllm"
)  # rules/.. (works when included elsewhere)


# The library modules behind the model and its data path; stages add their own on top.
CORE_CODE = (
    "model",
    "atomic.py",
    "data/collators.py",
    "data/errors.py",
    "data/images.py",
    "data/preprocess.py",
    "data/special_tokens.py",
    "data/template.py",
)
TRAIN_CODE = (*CORE_CODE, "train/datasets.py", "train/settings.py", "train/trainer.py")
PREFERENCE_CODE = (
    *TRAIN_CODE,
    "train/align.py",
    "train/logps.py",
    "train/preference.py",
    "train/reference_cache.py",
)


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


def preference_inputs():
    """What preference jobs read: the demo world, or the real preference file (if configured)."""
    if IS_DEMO:
        return [DEMO_WORLD]
    return [PREFERENCE["data"]] if PREFERENCE else []


def preference_data():
    if IS_DEMO:
        return data_path("preference")
    return PREFERENCE["data"] if PREFERENCE else None


def preference_image_folder(wildcards, input):
    return input.data[0] if IS_DEMO else PREFERENCE.get("images")


def preference_start_model(wildcards):
    return model_of(PREFERENCE["start"])


def preference_run_settings(wildcards):
    """Loss hyperparameters of one run (mllm.train.preference.PreferenceSettings)."""
    spec = PREFERENCE_RUNS[wildcards.prun]
    return {
        "loss_type": spec["loss_type"],
        "beta": spec["beta"],
        "nll_weight": spec.get("nll_weight", 0.0),
        "use_average_logp": PREFERENCE.get("use_average_logp", False),
        "on_bad_record": PREFERENCE.get("on_bad_record", "raise"),
    }


def yesno_outputs():
    """Yes/no accuracy of every stage, when the config asks for it (it needs the SFT test set)."""
    return (
        expand("results/yesno/{stage}.json", stage=STAGES) if "yesno" in config else []
    )


def train_metrics_outputs():
    runs = [s for s in STAGES if s in SFT_RUNS or s in PREFERENCE_RUNS]
    return expand("results/train/{run}/metrics.json", run=runs)


def strategies_of(stage):
    """Every strategy for the base model; trained stages only those the config lists for them."""
    if stage == "base":
        return STRATEGIES
    return config["decoding"].get("trained_stage_strategies", STRATEGIES)


def chair_runs():
    return [[stage, strategy] for stage in STAGES for strategy in strategies_of(stage)]


def chair_outputs():
    return [
        f"results/chair/{stage}/{strategy}.json" for stage, strategy in chair_runs()
    ]
