"""Snakemake adapter: Acc@0.5 of one stage's model on every grounding split, the model loaded once
(mllm.eval.grounding). Every split file is read before the model: a bad record fails the job
before any decoding, and no split's output is written."""

from typing import TYPE_CHECKING

from mllm.data.grounding import read_referents
from mllm.eval.grounding import GroundingEvalSettings, GroundingSplit, evaluate_grounding
from mllm.family.registry import load_model
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
splits = [
    GroundingSplit(
        labels={"stage": snakemake.wildcards.stage, "dataset": dataset, "split": split},
        referents=read_referents(
            referents, image_folder=snakemake.params.image_folder, **snakemake.params.options
        ),
        metrics_path=metrics,
        items_path=answers,
    )
    for (dataset, split), referents, metrics, answers in zip(
        snakemake.params.splits,
        snakemake.input.referents,
        snakemake.output.metrics,
        snakemake.output.answers,
        strict=True,
    )
]
for metrics in evaluate_grounding(
    load_model(snakemake.input.model),
    splits,
    image_folder=snakemake.params.image_folder,
    settings=GroundingEvalSettings.from_dict(
        snakemake.params.settings, where="config grounding.eval"
    ),
):
    print(metrics)
