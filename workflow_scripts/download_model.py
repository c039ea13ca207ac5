"""Snakemake adapter: fetch the base checkpoint (hub repo id or local folder; mllm.download)."""

from pathlib import Path
from typing import TYPE_CHECKING

from mllm.atomic import write_json
from mllm.download.model import snapshot_model
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
provenance = snapshot_model(
    snakemake.params.source,
    Path(snakemake.output.model),
    revision=snakemake.params.revision,
    trust_remote_code=snakemake.params.trust_remote_code,
    family=snakemake.params.family,
    min_pixels=snakemake.params.min_pixels,
    max_pixels=snakemake.params.max_pixels,
)
write_json(snakemake.output.provenance, provenance)
