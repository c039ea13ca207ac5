"""Snakemake adapter: render results/report/index.html from the metric artifacts (mllm.report)."""

from typing import TYPE_CHECKING

from mllm.report.inputs import collect_inputs
from mllm.report.page import write_report
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake


start_job(snakemake.log[0], snakemake.threads)
inputs = collect_inputs(
    chair=dict(zip(map(tuple, snakemake.params.runs), snakemake.input.chair, strict=True)),
    stages=list(snakemake.params.stages),
    yesno=list(snakemake.input.yesno),
    training=list(snakemake.input.training),
    grounding=list(snakemake.input.grounding),
    grounding_run=snakemake.params.grounding_run,
    grounding_image_folder=snakemake.params.image_folder,
    pope=list(snakemake.input.pope),
    benchmark_files=dict(snakemake.params.benchmark_files),
    world_provenance=dict(snakemake.params.world_provenance),
    job_benchmarks=dict(
        zip(snakemake.input.job_benchmarks, snakemake.params.benchmark_stages, strict=True)
    ),
    benchmark=snakemake.input.benchmark,
    image_folder=snakemake.params.image_folder,
    preference_runs=dict(snakemake.params.preference_runs),
    preference_start=snakemake.params.preference_start,
    config=dict(snakemake.params.config),
    world=snakemake.params.world,
    data_notes=list(snakemake.input.world_notes),
    recipe_checks=list(snakemake.input.recipe_checks),
)
write_report(inputs, snakemake.output.page, snakemake.output.figures, snakemake.output.headline)
