"""Snakemake adapter: one lmms-lab split into a Shikra-style REC file (mllm.data.refcoco_parquet)."""

from typing import TYPE_CHECKING

from mllm.data.refcoco_parquet import convert_lmms_refcoco, split_files
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
summary = convert_lmms_refcoco(
    split_files(snakemake.input.release, snakemake.wildcards.split),
    dataset=snakemake.wildcards.dataset,
    split=snakemake.wildcards.split,
    output_path=snakemake.output.rec,
    image_dir=snakemake.output.images,
    summary_path=snakemake.output.summary,
    on_bad_record=snakemake.params.on_bad_record,
)
print(summary)
