"""Snakemake adapter: reference log-probs of every preference pair, cached with their content key."""

from typing import TYPE_CHECKING

from mllm.runtime import start_job
from mllm.train.align import build_reference_logps

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
summary = build_reference_logps(
    model_dir=snakemake.input.model,
    data_file=snakemake.params.data_file,
    image_folder=snakemake.params.image_folder,
    max_length=snakemake.params.max_length,
    batch_size=snakemake.params.batch_size,
    on_bad_record=snakemake.params.on_bad_record,
    output_path=snakemake.output.logps,
    summary_path=snakemake.output.summary,
)
print(summary)
