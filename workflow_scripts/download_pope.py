"""Snakemake adapter: the published POPE files, official json lines or lmms-lab parquet
(mllm.download.pope)."""

from pathlib import Path
from typing import TYPE_CHECKING

from mllm.atomic import write_json
from mllm.download.pope import fetch_pope
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
provenance = fetch_pope(
    snakemake.params.source,
    Path(snakemake.output.folder),
    file_format=snakemake.params.format,
    revision=snakemake.params.revision,
    sha256=snakemake.params.sha256,
)
write_json(snakemake.output.provenance, provenance)
