"""Snakemake adapter: POPE metrics of one stage's model on every setting's questions
(mllm.eval.pope)."""

from typing import TYPE_CHECKING

from mllm.eval.pope import PopeEvalSettings, evaluate_pope
from mllm.family.registry import load_model
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
settings = list(snakemake.params.settings_order)
metrics = evaluate_pope(
    load_model(snakemake.input.model),
    dict(zip(settings, snakemake.input.questions, strict=True)),
    image_folder=snakemake.params.image_folder,
    settings=PopeEvalSettings.from_dict(snakemake.params.settings, where="config pope.eval"),
    stage=snakemake.wildcards.stage,
    outputs={
        setting: paths
        for setting, paths in zip(
            settings,
            zip(snakemake.output.metrics, snakemake.output.answers, strict=True),
            strict=True,
        )
    },
)
print(metrics)
