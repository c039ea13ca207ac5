"""Snakemake adapter: render results/report/index.html from the metric artifacts (mllm.report)."""

import json
from pathlib import Path
from typing import TYPE_CHECKING

from mllm.report.html import ReportInputs, write_report
from mllm.report.provenance import collect_provenance
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake


def read(path):
    return json.loads(Path(path).read_text())


start_job(snakemake.log[0], snakemake.threads)
stages = list(snakemake.params.stages)
training = {}
for metrics_path in snakemake.input.training:
    run = Path(metrics_path).parent.name
    state = read(Path(metrics_path).with_name("trainer_state.json"))
    training[run] = {"metrics": read(metrics_path), "log_history": state["log_history"]}
inputs = ReportInputs(
    chair={
        tuple(run): read(path)
        for run, path in zip(snakemake.params.runs, snakemake.input.chair, strict=True)
    },
    stages=stages,
    yesno={Path(path).stem: read(path) for path in snakemake.input.yesno},
    training=training,
    preference_runs=list(snakemake.params.preference_runs),
    preference_start=snakemake.params.preference_start,
    provenance=collect_provenance(world=snakemake.params.world),
)
write_report(inputs, snakemake.output[0])
