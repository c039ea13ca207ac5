"""Snakemake adapter: fetch COCO 2014 val captions + instances (URL, zip or folder; mllm.download)."""

from pathlib import Path
from typing import TYPE_CHECKING

from mllm.atomic import write_json
from mllm.download.coco import fetch_coco_annotations
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
files = [Path(path) for path in snakemake.output.files]  # {instances,captions}_{split}.json
provenance = fetch_coco_annotations(
    snakemake.params.source,
    files[0].parent,
    splits=sorted({file.stem.split("_", 1)[1] for file in files}),
    sha256=snakemake.params.sha256,
)
write_json(snakemake.output.provenance, provenance)
