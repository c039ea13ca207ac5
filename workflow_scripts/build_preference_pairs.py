"""Snakemake adapter: on-policy preference pairs sampled from the start model, checked against GT
objects with CHAIR (mllm.preference.on_policy)."""

from typing import TYPE_CHECKING

from mllm.eval.nltk_data import use_nltk_data
from mllm.preference.on_policy import OnPolicySettings, build_preference_pairs
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
use_nltk_data(snakemake.input.nltk_data)
summary = build_preference_pairs(
    model_dir=snakemake.input.model,
    prompts_file=snakemake.input.prompts,
    image_folder=snakemake.params.image_folder,
    instances=[snakemake.input.instances],
    captions=[snakemake.input.captions],
    generation=dict(snakemake.params.generation),
    settings=OnPolicySettings.from_dict(
        snakemake.params.settings, where="config preference.on_policy"
    ),
    output_path=snakemake.output.pairs,
    summary_path=snakemake.output.summary,
    samples_path=snakemake.output.samples,
    **({"analyzer": snakemake.params.analyzer} if snakemake.params.analyzer else {}),
)
print({key: summary[key] for key in ("pairs", "chosen_sources", "samples_chair")})
