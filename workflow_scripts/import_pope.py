"""Snakemake adapter: the fetched published POPE files into the world's POPE files
(mllm.data.pope)."""

from typing import TYPE_CHECKING

from mllm.data.pope import import_published
from mllm.runtime import start_job
from mllm.workflow.world import POPE_SETTINGS

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
summary = import_published(
    snakemake.params.format,
    snakemake.input.folder,
    {setting: snakemake.output[setting] for setting in POPE_SETTINGS},
    image_dir=snakemake.output.get("images"),
    image_folder=snakemake.params.image_folder,
    image_root=snakemake.params.image_root,
)
print(summary)
