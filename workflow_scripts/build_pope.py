"""Snakemake adapter: the three POPE question files from the world's COCO instances
(mllm.data.pope)."""

from typing import TYPE_CHECKING

from mllm.data.pope import PopeConstruction, build_pope_files
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
summary = build_pope_files(
    snakemake.input.instances,
    dict(snakemake.output),
    PopeConstruction.from_dict(snakemake.params.construction, where="config pope.construction"),
    image_prefix=snakemake.params.image_prefix,
)
print(summary)
if summary["images"] < summary["images_asked"]:
    print(
        f"POPE: {summary['images']} images, not {summary['images_asked']}: the world has only"
        f" {summary['images_eligible']} with at least {summary['objects_per_image']} objects"
    )
