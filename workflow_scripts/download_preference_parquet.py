"""Snakemake adapter: RLAIF-V's selected parquet shards from the Hub or a folder (mllm.download)."""

from typing import TYPE_CHECKING

from mllm.atomic import write_json
from mllm.data.rlaif_v import REPO_ID, shard_patterns
from mllm.download.hub_dataset import fetch_dataset_files
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
provenance = fetch_dataset_files(
    snakemake.params.source or REPO_ID,
    snakemake.output.shards,
    shard_patterns(snakemake.params.shards),
    revision=snakemake.params.revision,
)
write_json(snakemake.output.provenance, provenance)
