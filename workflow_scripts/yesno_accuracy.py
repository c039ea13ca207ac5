"""Snakemake adapter: yes/no accuracy of one stage's model on the SFT test set (mllm.eval.yesno)."""

from typing import TYPE_CHECKING

from mllm.eval.yesno import evaluate_yesno
from mllm.model.io import load_model
from mllm.runtime import start_job
from mllm.train.datasets import read_json_records

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
metrics = evaluate_yesno(
    load_model(snakemake.input.model),
    read_json_records(snakemake.params.test_file),
    image_folder=snakemake.params.image_folder,
    generation=dict(snakemake.params.generation),
    batch_size=snakemake.params.batch_size,
    seed=snakemake.params.seed,
    source=snakemake.params.test_file,
    metrics_path=snakemake.output.metrics,
    answers_path=snakemake.output.answers,
)
print(metrics)
