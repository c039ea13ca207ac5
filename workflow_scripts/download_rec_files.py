"""Snakemake adapter: the REC annotation files from Shikra's zip or a folder (mllm.download)."""

from pathlib import Path
from typing import TYPE_CHECKING

from mllm.atomic import write_json
from mllm.download.rec import fetch_rec_files
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
if not snakemake.params.source:
    raise ValueError(
        "config real.rec_annotations: give the Shikra annotation zip (a manual download from "
        "Google Drive, see mllm.download.sources.KNOWN_SOURCES['shikra_annotations']) or a folder"
    )
provenance = fetch_rec_files(
    snakemake.params.source,
    Path(snakemake.output.files[0]).parent,
    snakemake.params.names,
    sha256=snakemake.params.sha256,
)
write_json(snakemake.output.provenance, provenance)
