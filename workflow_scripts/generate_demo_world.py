"""Snakemake adapter: draw the demo world (mllm.demo.generate_world)."""

from pathlib import Path
from typing import TYPE_CHECKING

from mllm.demo.config import DemoWorldConfig
from mllm.demo.world import generate_world
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
world = Path(snakemake.output.manifest).parent  # every output lies in the world's folder
generate_world(world, DemoWorldConfig.from_dict(dict(snakemake.params.settings)))
