"""Config validation and the helpers that map logical inputs to files in either world."""

import json
import os
import shlex
import sys
from pathlib import Path

from snakemake_interface_executor_plugins.settings import DeploymentMethod

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
GROUNDING = config.get("grounding")
GROUNDING_STAGE = "grounding"  # the grounding SFT run: a stage like any other
GROUNDING_RUNS = [GROUNDING_STAGE] if GROUNDING else []
STAGES = config["stages"] + [
    run for run in [*GROUNDING_RUNS, *PREFERENCE_RUNS] if run not in config["stages"]
]
for _stage in STAGES:
    if _stage not in ["base", *SFT_RUNS, *GROUNDING_RUNS, *PREFERENCE_RUNS]:
        raise ValueError(
            f"config stages: {_stage!r} is neither 'base' nor an 'sft', 'grounding' or"
            " 'preference' run"
        )
if GROUNDING:
    if GROUNDING["start"] != "base" and GROUNDING["start"] not in SFT_RUNS:
        raise ValueError(
            f"config grounding.start: unknown stage {GROUNDING['start']!r}"
        )
    if not any("val" in splits for splits in GROUNDING["splits"].values()):
        raise ValueError(
            "config grounding.splits: name at least one `val` split; it gives the grounding"
            " run its eval loss"
        )
    for _stage in GROUNDING["eval_stages"]:
        if _stage not in STAGES:
            raise ValueError(f"config grounding.eval_stages: {_stage!r} is not a stage")
if PREFERENCE and PREFERENCE["start"] != "base" and PREFERENCE["start"] not in SFT_RUNS:
    raise ValueError(f"config preference.start: unknown stage {PREFERENCE['start']!r}")
# Where the preference pairs come from: the world's file (the demo generator's, or a real config's
# `preference.data`), or sampled from the start model and checked against GT objects (on_policy).
PAIR_SOURCE = PREFERENCE.get("pairs", "world") if PREFERENCE else None
ON_POLICY = PREFERENCE.get("on_policy", {}) if PREFERENCE else {}
ON_POLICY_PAIRS = "results/preference/pairs.json"
if PAIR_SOURCE == "on_policy":
    if not IS_DEMO and not ON_POLICY.get("instances"):
        raise ValueError(
            "config preference.pairs: on_policy needs preference.on_policy.instances (COCO "
            "instances of the prompt images) outside the demo world"
        )
    if ON_POLICY.get("strategy", "sampling") not in config["decoding"]["strategies"]:
        raise ValueError(
            f"config preference.on_policy.strategy: {ON_POLICY['strategy']!r} is not a "
            "decoding.strategies preset"
        )
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
    "preference_instances": "annotations/instances_train.json",  # GT of the preference images
    "preference_captions": "annotations/captions_train.json",
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


def sft_image_folder(wildcards):
    return DEMO_WORLD if IS_DEMO else config["real"]["sft_images"]


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
# Training jobs also run the launcher (`python -m mllm.launch`) and its rank handling.
TRAIN_CODE = (
    *CORE_CODE,
    "distributed.py",
    "launch.py",
    "runtime.py",
    "train/datasets.py",
    "train/settings.py",
    "train/trainer.py",
)
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


def job_spec(**arguments):
    """`params: spec=`: the keyword arguments of a `python -m mllm.launch` job as one JSON object.

    Values are constants, strings with `{wildcard}`s or functions of the wildcards (like any
    param). The spec depends on nothing else, so Snakemake tracks it by its text: changing one
    hyperparameter reruns exactly the jobs whose spec holds it. Paths of inputs and outputs are not
    in it; the shell command passes them as NAME=PATH.
    """

    def spec(wildcards):
        values = {}
        for name, value in arguments.items():
            if callable(value):
                value = value(wildcards)
            elif isinstance(value, str):
                value = value.format(**wildcards)
            values[name] = value
        return json.dumps(values, sort_keys=True)

    return spec


def launcher(wildcards, resources):
    """`params: launch=`: how a job of `python -m mllm.launch` starts. With resources.gpu > 1,
    torchrun (`python -m torch.distributed.run`) forks one rank per GPU inside the job's single
    SLURM task; with 0 or 1 GPU it is one plain process.

    The interpreter is the job's conda env's `python` under `--sdm conda`, else the one running
    Snakemake (whose environment need not be on PATH). Derived from resources, hence no rerun
    trigger: a changed `compute.train_gpus` does not rerun finished training by itself.
    """
    python = (
        "python"
        if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
        else shlex.quote(sys.executable)
    )
    gpus = int(resources.get("gpu", 0))
    if gpus > 1:
        return f"{python} -m torch.distributed.run --standalone --nproc_per_node={gpus} -m mllm.launch"
    return f"{python} -m mllm.launch"


def preference_inputs():
    """What preference jobs read: the demo world (its images), or the real preference file (if
    configured); with on-policy pairs, the pairs built from the start model."""
    pairs = [ON_POLICY_PAIRS] if PAIR_SOURCE == "on_policy" else []
    if IS_DEMO:
        return [DEMO_WORLD, *pairs]
    return pairs or ([PREFERENCE["data"]] if PREFERENCE else [])


def preference_data():
    if PAIR_SOURCE == "on_policy":
        return ON_POLICY_PAIRS
    if IS_DEMO:
        return data_path("preference")
    return PREFERENCE["data"] if PREFERENCE else None


def on_policy_prompts():
    """Images and questions the start model answers: the world's preference prompts."""
    if IS_DEMO:
        return data_path("preference")
    return ON_POLICY.get("prompts", PREFERENCE.get("data"))


def on_policy_gt(kind):
    """COCO-format `instances` or `captions` files holding the prompt images' GT objects."""
    if IS_DEMO:
        return [data_path(f"preference_{kind}")]
    return list(ON_POLICY.get(kind, []))


def on_policy_inputs():
    if IS_DEMO:
        return [DEMO_WORLD]
    return [on_policy_prompts(), *on_policy_gt("instances"), *on_policy_gt("captions")]


def on_policy_image_folder(wildcards, input):
    return input.data[0] if IS_DEMO else PREFERENCE.get("images")


def on_policy_settings():
    """Sampling and pair-selection settings (mllm.train.onpolicy_pairs.OnPolicySettings)."""
    section = settings("preference", "on_policy", default={})
    return {
        key: value
        for key, value in section.items()
        if key not in ("strategy", "prompts", "instances", "captions")
    }


def on_policy_generation():
    return settings("decoding", "strategies", ON_POLICY.get("strategy", "sampling"))


def preference_image_folder(wildcards):
    return DEMO_WORLD if IS_DEMO else PREFERENCE.get("images")


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
    runs = [s for s in STAGES if s in [*SFT_RUNS, *GROUNDING_RUNS, *PREFERENCE_RUNS]]
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


def grounding_evaluations():
    """(stage, dataset, split) of every grounding evaluation; none without `grounding`."""
    if not GROUNDING:
        return []
    return [
        (stage, dataset, split)
        for stage in GROUNDING["eval_stages"]
        for dataset, splits in GROUNDING["splits"].items()
        for split in splits
    ]


def grounding_outputs():
    """Grounding metrics of every evaluated stage × (dataset, split)."""
    return [
        f"results/grounding/{stage}/{dataset}_{split}.json"
        for stage, dataset, split in grounding_evaluations()
    ]


def grounding_image_folder(wildcards=None):
    """Folder REC `img_path`s resolve against (None without `grounding`): the demo world, or COCO
    train2014 as the download rule unpacks it."""
    if not GROUNDING:
        return None
    return DEMO_WORLD if IS_DEMO else "resources/coco/train2014"


def trained_runs():
    """SFT runs the DAG trains: configured stages, the preference and grounding starts and their
    own starts."""
    wanted = set(STAGES) | {
        section["start"] for section in (PREFERENCE, GROUNDING) if section
    }
    runs = []
    while wanted:
        run = wanted.pop()
        if run in SFT_RUNS and run not in runs:
            runs.append(run)
            wanted.add(config["sft"][run]["start"])
    return sorted(runs)


def job_benchmarks():
    """Benchmark file -> stage ("" for shared jobs) of every benchmarked job behind the report,
    for its overview (wall time, peak memory). The paths are the rules' own `benchmark:`, so call
    this after the rules are defined."""
    jobs = {str(rules.build_chair_cache.benchmark): ""}
    if IS_DEMO:
        jobs[str(rules.generate_demo_world.benchmark)] = ""
        jobs[str(rules.warm_up_vision.benchmark)] = ""
        jobs[str(rules.build_base_model.benchmark)] = "base"
    for stage, strategy in chair_runs():
        jobs[expand(rules.decode.benchmark, stage=stage, strategy=strategy)[0]] = stage
    if "yesno" in config:
        for stage in STAGES:
            jobs[expand(rules.yesno_accuracy.benchmark, stage=stage)[0]] = stage
    for run in trained_runs():
        jobs[expand(rules.train_sft.benchmark, run=run)[0]] = run
    if PREFERENCE:
        jobs[str(rules.reference_logps.benchmark)] = ""
        if PAIR_SOURCE == "on_policy":
            jobs[str(rules.build_preference_pairs.benchmark)] = ""
        for run in PREFERENCE_RUNS:
            jobs[expand(rules.train_preference.benchmark, prun=run)[0]] = run
    if GROUNDING:
        jobs[str(rules.train_grounding.benchmark)] = GROUNDING_STAGE
        for stage, dataset, split in grounding_evaluations():
            benchmark = expand(
                rules.grounding_eval.benchmark,
                stage=stage,
                dataset=dataset,
                split=split,
            )
            jobs[benchmark[0]] = stage
    return jobs


GROUNDING_CODE = (*CORE_CODE, "data/grounding.py")


def grounding_folder():
    """Where the REC files live: inside the demo world, or where the download rule puts them."""
    return f"{DEMO_WORLD}/grounding" if IS_DEMO else "resources/grounding"


def grounding_files(names):
    """Inputs of jobs reading REC files `names`: the demo world, or the fetched files + images."""
    if IS_DEMO:
        return [DEMO_WORLD]
    return [ancient(f"resources/grounding/{name}") for name in names] + [
        ancient(grounding_image_folder())
    ]


def grounding_eval_files():
    return [name for splits in GROUNDING["splits"].values() for name in splits.values()]


def grounding_val_files():
    """Validation REC files, for the training run's eval loss (the `val` splits configured)."""
    return [splits["val"] for splits in GROUNDING["splits"].values() if "val" in splits]


def grounding_split_input(wildcards):
    return grounding_files([GROUNDING["splits"][wildcards.dataset][wildcards.split]])


def grounding_split_source(wildcards):
    return f"{grounding_folder()}/{GROUNDING['splits'][wildcards.dataset][wildcards.split]}"
