"""Snakemake adapter: referring-expression files → grounding SFT records (mllm.data.grounding)."""

from typing import TYPE_CHECKING

from mllm.data.grounding import prepare_grounding_sft
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
for split in ("train", "val"):
    summary = prepare_grounding_sft(
        snakemake.input[split],
        image_folder=snakemake.params.image_folder,
        **snakemake.params.options,
        output_path=snakemake.output[split],
        summary_path=snakemake.output[f"{split}_summary"],
    )
    print(split, summary)
