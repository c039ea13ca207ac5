"""Snakemake adapter: one DPO / NCA run on the cached reference log-probs (mllm.train.align)."""

from typing import TYPE_CHECKING

from mllm.runtime import start_job
from mllm.train.align import train_preference
from mllm.train.preference import PreferenceSettings
from mllm.train.settings import TrainSettings

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
train_preference(
    start_model_dir=snakemake.input.model,
    reference_path=snakemake.input.reference,
    data_file=snakemake.params.data_file,
    image_folder=snakemake.params.image_folder,
    preference=PreferenceSettings.from_dict(snakemake.params.preference),
    settings=TrainSettings.from_dict(snakemake.params.settings, where="config preference.training"),
    model_dir=snakemake.output.model,
    checkpoint_dir=snakemake.params.checkpoint_dir,
    state_path=snakemake.output.state,
    metrics_path=snakemake.output.metrics,
)
