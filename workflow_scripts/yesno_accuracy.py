"""Snakemake adapter: yes/no accuracy of one stage's model on the SFT test set (mllm.eval.yesno)."""

from typing import TYPE_CHECKING

from mllm.eval.yesno import YesNoSettings, evaluate_yesno
from mllm.family.registry import load_model
from mllm.records import read_json_records
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
metrics = evaluate_yesno(
    load_model(snakemake.input.model),
    read_json_records(snakemake.input.test),
    image_folder=snakemake.params.image_folder,
    settings=YesNoSettings.from_dict(snakemake.params.settings, where="config yesno"),
    source=snakemake.input.test,
    metrics_path=snakemake.output.metrics,
    answers_path=snakemake.output.answers,
)
print(metrics)
