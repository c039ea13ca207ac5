"""Snakemake adapter: supervised warm-up of the vision tower (mllm.demo.vision_warmup)."""

from typing import TYPE_CHECKING

from mllm.data.images import ImageProcessor
from mllm.demo.vision_warmup import WarmupSettings, warm_up_vision
from mllm.model.config import MLLMVisionConfig
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
warm_up_vision(
    snakemake.input.instances,
    snakemake.params.images,
    MLLMVisionConfig(**snakemake.params.vision),
    ImageProcessor(**snakemake.params.image_processing),
    WarmupSettings.from_dict(snakemake.params.settings, where="config vision_warmup"),
    weights_path=snakemake.output.weights,
    metrics_path=snakemake.output.metrics,
)
