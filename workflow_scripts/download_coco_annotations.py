"""Snakemake adapter: fetch COCO 2014 val captions + instances (URL, zip or folder; mllm.download)."""

from pathlib import Path
from typing import TYPE_CHECKING

from mllm.atomic import write_json
from mllm.download import fetch_coco_annotations
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
provenance = fetch_coco_annotations(
    snakemake.params.source,
    Path(snakemake.output.instances).parent,
    splits=("val2014",),
    sha256=snakemake.params.sha256,
)
write_json(snakemake.output.provenance, provenance)
