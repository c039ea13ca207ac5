"""Snakemake adapter: pre-train the demo base model on captions (mllm.train.pretrain)."""

from typing import TYPE_CHECKING

from mllm.runtime import start_job
from mllm.train.pretrain import build_base_model
from mllm.train.settings import TrainSettings

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
build_base_model(
    tokenizer_dir=snakemake.input.tokenizer,
    vision_weights=snakemake.input.vision,
    architecture=snakemake.params.architecture,
    image_processing=snakemake.params.image_processing,
    train_file=snakemake.params.train_file,
    image_folder=snakemake.input.world,
    settings=TrainSettings.from_dict(snakemake.params.settings, where="config base_model"),
    model_dir=snakemake.output.model,
    checkpoint_dir=snakemake.params.checkpoint_dir,
    state_path=snakemake.output.state,
    metrics_path=snakemake.output.metrics,
)
