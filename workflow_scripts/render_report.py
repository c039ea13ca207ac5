"""Snakemake adapter: render results/report/index.html from the metric artifacts (mllm.report)."""

import json
from pathlib import Path
from typing import TYPE_CHECKING

from mllm.report.html import ReportInputs, write_report
from mllm.report.provenance import collect_provenance
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
chair = {
    tuple(key): json.loads(Path(path).read_text())
    for key, path in zip(snakemake.params.runs, snakemake.input.chair, strict=True)
}
write_report(
    ReportInputs(chair, collect_provenance(world=snakemake.params.world)), snakemake.output[0]
)
