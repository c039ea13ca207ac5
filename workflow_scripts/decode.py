"""Snakemake adapter: decode the benchmark with one stage's model and one strategy."""

from typing import TYPE_CHECKING

from mllm.eval.decoding import decode_benchmark
from mllm.family.registry import load_model
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
decode_benchmark(
    load_model(snakemake.input.model, trust_remote_code=snakemake.params.trust_remote_code),
    snakemake.input.benchmark,
    snakemake.output[0],
    generation=dict(snakemake.params.generation),
    batch_size=snakemake.params.batch_size,
    seed=snakemake.params.seed,
    model_name=snakemake.wildcards.stage,
    strategy=snakemake.wildcards.strategy,
    image_folder=snakemake.params.image_folder,
)
