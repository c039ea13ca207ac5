"""Config validation, the experiment plan (mllm.workflow) and the rules' input helpers.

Nothing here asks which world it is in: the world's rules file (rules/worlds/) writes the table
of files in mllm.workflow.world, and every other rule reads those paths.
"""

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

from mllm.runtime import mark_started_jobs
from mllm.workflow.code_inputs import code_inputs
from mllm.workflow.deployment import deployment_problem
from mllm.workflow.image_manifest import ManifestInputs
from mllm.workflow.job_spec import job_spec
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

mark_started_jobs()  # they pause the garbage collector while they import

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


@cache
def world_manifests():
    """The image manifests of this reading of the Snakefile; the world's rules file (included
    after this one) sets WORLD_IMAGES."""
    return ManifestInputs(WORLD_IMAGES, refresh=workflow.is_main_process)


def image_manifests(*world_files):
    """`input: images=`: the manifests of the image folders `world_files` read, brought up to
    date first, so a replaced image reruns exactly the jobs that read it."""
    return world_manifests().of(world_files)


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


def grounding_outputs(suffix):
    """grounding_eval's outputs: one `results/grounding/{stage}/{dataset}_{split}.<suffix>` a split."""
    return [
        f"results/grounding/{{stage}}/{d}_{s}.{suffix}"
        for d, s in PLAN.grounding_splits
    ]


def grounding_training_images():
    """The manifests of the images grounding training reads: its train and val REC files'."""
    names = [*PLAN.grounding["train_files"], *PLAN.rec_val_files]
    return image_manifests(*map(rec_file, names))


def report_images():
    """The report shows benchmark thumbnails and grounding examples of every evaluated split."""
    return image_manifests(WORLD_FILES["benchmark"], *PLAN.grounding_split_files)


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
        for stage in PLAN.grounding["eval_stages"]:
            jobs[benchmark(rules.grounding_eval, stage=stage)] = stage
    return jobs
