"""Snakemake adapter: Acc@0.5 of one stage's model on one grounding split (mllm.eval.grounding)."""

from typing import TYPE_CHECKING

from mllm.data.grounding import read_referents
from mllm.eval.grounding import GroundingEvalSettings, evaluate_grounding
from mllm.family.registry import load_model
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
referents = read_referents(
    snakemake.input.referents,
    image_folder=snakemake.params.image_folder,
    **snakemake.params.options,
)
metrics = evaluate_grounding(
    load_model(snakemake.input.model),
    referents,
    image_folder=snakemake.params.image_folder,
    settings=GroundingEvalSettings.from_dict(
        snakemake.params.settings, where="config grounding.eval"
    ),
    labels={k: snakemake.wildcards[k] for k in ("stage", "dataset", "split")},
    metrics_path=snakemake.output.metrics,
    items_path=snakemake.output.answers,
)
print(metrics)
