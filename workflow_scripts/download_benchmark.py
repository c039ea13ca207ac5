"""Snakemake adapter: fetch and validate the objhal_bench JSONL (URL or local path; mllm.download)."""

from pathlib import Path
from typing import TYPE_CHECKING

from mllm.atomic import write_json
from mllm.download.benchmark import fetch_benchmark
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
provenance = fetch_benchmark(
    snakemake.params.source, Path(snakemake.output.benchmark), sha256=snakemake.params.sha256
)
write_json(snakemake.output.provenance, provenance)
