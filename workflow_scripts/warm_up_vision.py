"""Snakemake adapter: supervised warm-up of the vision tower (mllm.train.vision_warmup)."""

from typing import TYPE_CHECKING

from mllm.data.images import ImageProcessor
from mllm.model.config import MLLMVisionConfig
from mllm.runtime import start_job
from mllm.train.vision_warmup import WarmupSettings, warm_up_vision

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
warm_up_vision(
    snakemake.params.instances,
    snakemake.params.images,
    MLLMVisionConfig(**snakemake.params.vision),
    ImageProcessor(**snakemake.params.image_processing),
    WarmupSettings(**snakemake.params.settings),
    weights_path=snakemake.output.weights,
    metrics_path=snakemake.output.metrics,
)
