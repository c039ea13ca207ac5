"""Snakemake adapter: CHAIR ground truth of the benchmark images, built once (mllm.eval.chair)."""

from typing import TYPE_CHECKING

from mllm.atomic import write_json
from mllm.eval.benchmark import read_benchmark
from mllm.eval.chair import build_gt_cache
from mllm.eval.nltk_data import use_nltk_data
from mllm.eval.text_analysis import get_analyzer
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
use_nltk_data(snakemake.input.nltk_data)
image_ids = {int(row["image_id"]) for row in read_benchmark(snakemake.input.benchmark)}
cache = build_gt_cache(
    [snakemake.input.instances],
    [snakemake.input.captions],
    get_analyzer(*filter(None, [snakemake.params.analyzer])),
    image_ids,
)
write_json(snakemake.output[0], cache, indent=1)
print(f"GT for {len(cache['objects'])} images, analyzer {cache['analyzer']['name']}")
