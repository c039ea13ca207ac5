"""Snakemake adapter: supervised fine-tuning of one run (mllm.train.sft)."""

from typing import TYPE_CHECKING

from mllm.runtime import start_job
from mllm.train.settings import TrainSettings
from mllm.train.sft import train_sft

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
train_sft(
    start_model_dir=snakemake.input.model,
    train_file=snakemake.params.train_file,
    eval_file=snakemake.params.eval_file,
    image_folder=snakemake.params.image_folder,
    settings=TrainSettings.from_dict(
        snakemake.params.settings, where=f"config sft.{snakemake.wildcards.run}.training"
    ),
    model_dir=snakemake.output.model,
    checkpoint_dir=snakemake.params.checkpoint_dir,
    state_path=snakemake.output.state,
    metrics_path=snakemake.output.metrics,
)
