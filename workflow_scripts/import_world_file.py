"""Snakemake adapter: one real dataset file into the world's table (mllm.data.world_import)."""

from typing import TYPE_CHECKING

from mllm.data.world_import import import_world_file
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
provenance = import_world_file(
    snakemake.input.source,
    snakemake.output[0],
    kind=snakemake.params.kind,
    image_folder=snakemake.params.image_folder,
    image_root=snakemake.params.image_root,
    options=snakemake.params.options,
)
print(provenance)
