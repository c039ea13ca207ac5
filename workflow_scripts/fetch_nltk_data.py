"""Snakemake adapter: download nltk's reference data (punkt, tagger, WordNet) on a connected machine."""

from pathlib import Path
from typing import TYPE_CHECKING

from mllm.atomic import atomic_directory
from mllm.eval.nltk_data import download_reference
from mllm.runtime import start_job

if TYPE_CHECKING:
    from snakemake.script import snakemake

start_job(snakemake.log[0], snakemake.threads)
with atomic_directory(snakemake.output[0]) as scratch:
    download_reference(Path(scratch))
