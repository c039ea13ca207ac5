"""Snakemake adapter: train the demo tokenizer on the world's text (mllm.train.pretrain)."""

from typing import TYPE_CHECKING

from mllm.runtime import start_job
from mllm.train.pretrain import write_tokenizer

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
size = write_tokenizer(snakemake.params.corpus, snakemake.params.vocab_size, snakemake.output[0])
print(f"tokenizer: {size} tokens")
