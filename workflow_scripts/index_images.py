"""Snakemake adapter: the content manifest of one image folder (mllm.workflow.image_manifest)."""

from typing import TYPE_CHECKING

from mllm.runtime import start_job
from mllm.workflow.image_manifest import write_manifest

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
write_manifest(snakemake.params.folder, snakemake.output[0])
print(f"manifest of {snakemake.params.folder} written to {snakemake.output[0]}")
