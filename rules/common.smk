"""Config validation, the experiment plan (mllm.workflow) and the rules' input helpers.

Nothing here asks which world it is in: the world's rules file (rules/worlds/) writes the table
of files in mllm.workflow.world, and every other rule reads those paths.
"""

import json
import os
import re
import shlex
import sys
from functools import cache
from pathlib import Path

from snakemake_interface_executor_plugins.settings import DeploymentMethod

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# rules/.. : the repository, also when a wrapper Snakefile elsewhere includes this one
REPOSITORY = Path(workflow.current_basedir).parent
sys.path.insert(0, str(REPOSITORY))  # the library's workflow layer, installed or not

from mllm.workflow.code_inputs import code_inputs
from mllm.workflow.deployment import deployment_problem
from mllm.workflow.image_manifest import refresh_manifest
from mllm.workflow.launch_command import gpus_per_node, job_resources, launch_prefix
from mllm.workflow.plan import GROUNDING_STAGE, ON_POLICY_PAIRS, Plan, section
from mllm.workflow.world import (
    WORLD_DIR,
    BASE_MODEL,
    IMAGE_MANIFESTS,
    IMAGE_ROOT,
    POPE_FILES,
    VAL_IMAGES,
    WORLD_FILES,
    rec_file,
)

validate(config, schema="../config/schema.yaml")
# Before any job: a login node without conda under `--sdm conda` says what to do about it.
DEPLOYMENT_PROBLEM = deployment_problem(
    {str(method) for method in workflow.deployment_settings.deployment_method}
)
if DEPLOYMENT_PROBLEM:
    raise WorkflowError(DEPLOYMENT_PROBLEM)
PLAN = Plan(config)
THREADS = config["compute"]["threads"]  # training jobs
EVAL_THREADS = config["compute"].get("eval_threads", THREADS)
TRAIN_GPUS = config["compute"]["train_gpus"]
EVAL_GPUS = config["compute"]["eval_gpus"]
# `resources:` of the jobs that may span compute.train_nodes nodes (training, reference_logps)
TRAINING_RESOURCES = job_resources(config["compute"]["train_nodes"], TRAIN_GPUS)
REFERENCE_RESOURCES = job_resources(config["compute"]["train_nodes"], EVAL_GPUS)


def settings(*keys, default=None):
    """A config section for `params:` (keys sorted; absent keys stay absent, so the library's
    settings classes own every default)."""
    return section(config, *keys, default=default)


def code(entry):
    """`input: code=`: the library files `entry` (a workflow script or a job module) imports,
    transitively, so editing one reruns exactly the jobs that run it. Relative to the working
    directory, which need not be the repository (tests use a scratch one)."""
    return [os.path.relpath(path) for path in code_inputs(entry, REPOSITORY)]


def nltk_data_input():
    """nltk's reference data, fetched by a rule when the config asks for the `nltk` analyzer."""
    return ["resources/nltk_data"] if settings("chair", "analyzer") == "nltk" else []


def image_root(wildcards):
    """`params: image_folder=`: where the world files' relative image paths resolve. Images are
    read in place (a shared filesystem), not staged as inputs; a function keeps the linter from
    asking for an input-derived prefix."""
    return IMAGE_ROOT


def image_manifests(*world_files):
    """`input: images=`: the content manifests of the image folders `world_files` read (the
    world's WORLD_IMAGES), so a replaced image reruns exactly the jobs that read it. Reading the
    Snakefile brings each manifest up to date first: an image rewritten in place changes no
    mtime Snakemake looks at. Jobs re-reading it on cluster nodes leave that to the head.
    """
    return [fresh_manifest(name) for name in WORLD_IMAGES.names_of(world_files)]


@cache
def fresh_manifest(name):
    """The manifest of folder `name`, brought up to date once per reading of the Snakefile."""
    path = WORLD_IMAGES.manifest(name)
    if workflow.is_main_process:
        refresh_manifest(WORLD_IMAGES.folders[name], path)
    return path


def image_folder(wildcards):
    """`params: folder=` of index_images: the image folder named `images`."""
    return WORLD_IMAGES.folders[wildcards.images]


def image_folder_maker(wildcards):
    """`input: folder=` of index_images: the rule output that makes the folder, if one does."""
    maker = WORLD_IMAGES.made_by.get(wildcards.images)
    return [maker] if maker else []


def stage_model(wildcards):
    return PLAN.model_dir(wildcards.stage)


def sft_start_model(wildcards):
    return PLAN.model_dir(PLAN.start_of(wildcards.run))


def sft_settings(wildcards):
    return settings("sft", wildcards.run, "training")


def generation_kwargs(wildcards):
    return settings("decoding", "strategies", wildcards.strategy)


def preference_run_settings(wildcards):
    return PLAN.preference_runs[wildcards.prun].settings


def preference_pairs():
    """The pairs preference jobs read: the world's, or those sampled from the start model."""
    if PLAN.pair_source == "on_policy":
        return ON_POLICY_PAIRS
    return WORLD_FILES["preference"]


def grounding_options(*keys):
    """The REC reading options of `grounding:` the config gives (format, on_bad_record, seed)."""
    return {key: config["grounding"][key] for key in keys if key in config["grounding"]}


def rec_split_file(wildcards):
    return rec_file(PLAN.rec_file_of(wildcards.dataset, wildcards.split))


def rec_split_images(wildcards):
    return image_manifests(rec_split_file(wildcards))


def grounding_training_images():
    """The manifests of the images grounding training reads: its train and val REC files'."""
    names = [*PLAN.grounding["train_files"], *PLAN.rec_val_files]
    return image_manifests(*map(rec_file, names))


def report_images():
    """The report shows benchmark thumbnails and grounding examples of every evaluated split."""
    evaluated = [PLAN.rec_file_of(d, s) for _, d, s in PLAN.grounding_evaluations]
    return image_manifests(WORLD_FILES["benchmark"], *map(rec_file, evaluated))


def job_spec(**arguments):
    """`params: spec=`: the keyword arguments of a job module's function as one JSON object.

    Values are constants, strings with `{wildcard}`s or functions of the wildcards (like any
    param). Snakemake tracks the spec by its text: changing one hyperparameter reruns exactly the
    jobs whose spec holds it. Input and output paths are not in it; the shell command passes them
    as NAME=PATH. Values that are None (a config key left out) are left out too.
    """

    def spec(wildcards):
        values = {}
        for name, value in arguments.items():
            if callable(value):
                value = value(wildcards)
            elif isinstance(value, str):
                value = value.format(**wildcards)
            if value is not None:
                values[name] = value
        return json.dumps(values, sort_keys=True)

    return spec


def launcher(wildcards, resources):
    """`params: launch=`: how a job module starts (`{params.launch} mllm.train.sft train_sft …`):
    one process; torchrun forking one rank per GPU inside the job's single SLURM task; or, on
    several nodes (`compute.train_nodes`), one task per node each starting torchrun
    (mllm.workflow.launch_command renders and runs the exact commands).

    The interpreter is the job's conda env's `python` under `--sdm conda`, else the one running
    Snakemake (whose environment need not be on PATH). Derived from resources, hence no rerun
    trigger: a changed `compute.train_gpus` does not rerun finished training by itself.
    """
    python = (
        "python"
        if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
        else shlex.quote(sys.executable)
    )
    return launch_prefix(
        python, int(resources.get("nodes", 1)), gpus_per_node(resources)
    )


def job_benchmarks():
    """Benchmark file -> stage ("" for shared jobs) of every benchmarked job behind the report,
    for its overview (wall time, peak memory). The world's rules file lists its own jobs in
    WORLD_JOBS; the paths are the rules' own `benchmark:`, so call this after the rules exist.
    """

    def benchmark(rule, **wildcards):
        return expand(rule.benchmark, **wildcards)[0]

    jobs = dict(WORLD_JOBS)
    jobs[benchmark(rules.build_chair_cache)] = ""
    for stage, strategy in PLAN.decodings:
        jobs[benchmark(rules.decode, stage=stage, strategy=strategy)] = stage
    for stage in PLAN.yesno_stages:
        jobs[benchmark(rules.yesno_accuracy, stage=stage)] = stage
    for stage in PLAN.pope_stages:
        jobs[benchmark(rules.pope_eval, stage=stage)] = stage
    for run in PLAN.trained_sft_runs:
        jobs[benchmark(rules.train_sft, run=run)] = run
    if PLAN.preference:
        jobs[benchmark(rules.reference_logps)] = ""
        if PLAN.pair_source == "on_policy":
            jobs[benchmark(rules.build_preference_pairs)] = ""
        for run in PLAN.preference_runs:
            jobs[benchmark(rules.train_preference, prun=run)] = run
    if PLAN.grounding:
        jobs[benchmark(rules.train_grounding)] = GROUNDING_STAGE
        for stage, dataset, split in PLAN.grounding_evaluations:
            jobs[
                benchmark(
                    rules.grounding_eval, stage=stage, dataset=dataset, split=split
                )
            ] = stage
    return jobs
