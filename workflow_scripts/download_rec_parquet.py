"""Snakemake adapter: the splits of one lmms-lab RefCOCO-family parquet release (mllm.download)."""

from typing import TYPE_CHECKING

from mllm.atomic import write_json
from mllm.data.refcoco_parquet import LMMS_LAB_REPOS, split_pattern
from mllm.download.hub_dataset import fetch_dataset_files
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
provenance = fetch_dataset_files(
    snakemake.params.source or LMMS_LAB_REPOS[snakemake.wildcards.dataset],
    snakemake.output.files,
    [split_pattern(split) for split in snakemake.params.splits],
    revision=snakemake.params.revision,
)
write_json(snakemake.output.provenance, provenance)
