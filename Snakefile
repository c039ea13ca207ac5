import re

from snakemake.utils import min_version

min_version("9.0")


# The demo world is the default; a --configfile replaces it instead of being merged into it, so an
# experiment config never silently inherits demo settings.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/download.smk"
include: "rules/model.smk"
include: "rules/train.smk"
include: "rules/decode.smk"
include: "rules/evaluate.smk"


if PAIR_SOURCE == "on_policy":

    include: "rules/preference_pairs.smk"


if GROUNDING:

    include: "rules/grounding.smk"


include: "rules/report.smk"


wildcard_constraints:
    stage="|".join(re.escape(stage) for stage in STAGES),
    strategy="|".join(STRATEGIES),
    run="|".join(SFT_RUNS) or "no-sft-run",
    prun="|".join(re.escape(run) for run in PREFERENCE_RUNS) or "no-preference-run",
    dataset=(
        "|".join(map(re.escape, GROUNDING["splits"])) if GROUNDING else "no-grounding"
    ),
    split="[A-Za-z0-9]+",


# Downloads run where the network is (compute nodes usually have none).
localrules:
    all,
    report,
    download_model,
    download_coco_annotations,
    download_benchmark,
    fetch_nltk_data,


rule all:
    input:
        "results/report/index.html",
