"""Snakemake adapter: CHAIR metrics of one answers file (mllm.eval.chair)."""

from typing import TYPE_CHECKING

from mllm.atomic import write_json
from mllm.eval.chair import read_gt_cache, score_answers
from mllm.eval.nltk_data import use_nltk_data
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
use_nltk_data(snakemake.input.nltk_data)
metrics = score_answers(snakemake.input.answers, read_gt_cache(snakemake.input.cache))
write_json(snakemake.output[0], metrics, indent=1)
print({key: round(metrics[key], 1) for key in ("CHAIRs", "CHAIRi", "Recall", "Len")})
