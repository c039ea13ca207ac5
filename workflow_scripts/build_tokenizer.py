"""Snakemake adapter: train the demo tokenizer on the world's text (mllm.demo.base_model)."""

from typing import TYPE_CHECKING

from mllm.demo.tokenizer import write_tokenizer
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
size = write_tokenizer(snakemake.input.corpus, snakemake.output[0], **snakemake.params.settings)
print(f"tokenizer: {size} tokens")
