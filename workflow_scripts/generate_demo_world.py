"""Snakemake adapter: draw the demo world (mllm.demo.generate_world)."""

from typing import TYPE_CHECKING

from mllm.demo.config import DemoWorldConfig
from mllm.demo.world import generate_world
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
generate_world(snakemake.output[0], DemoWorldConfig.from_dict(dict(snakemake.params.settings)))
