"""Snakemake adapter: COCO train2014 images, the RefCOCO family's image folder (mllm.download)."""

from pathlib import Path
from typing import TYPE_CHECKING

from mllm.atomic import write_json
from mllm.download.images import fetch_image_folder
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
provenance = fetch_image_folder(
    snakemake.params.source, Path(snakemake.output.images), sha256=snakemake.params.sha256
)
write_json(snakemake.output.provenance, provenance)
