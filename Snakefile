from snakemake.utils import min_version

min_version("9.0")


# The demo world is the default; a --configfile replaces it instead of being merged into it, so an
# experiment config never silently inherits demo settings.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
# The world writes the table of files every stage reads (mllm.workflow.world).
include: f"rules/worlds/{config['world']}.smk"
include: "rules/images.smk"
include: "rules/evaluate.smk"
include: "rules/sft.smk"


if PLAN.pope_evaluations:

    include: "rules/pope.smk"


if PLAN.grounding:

    include: "rules/grounding.smk"


if PLAN.preference:

    include: "rules/preference.smk"


include: "rules/report.smk"


wildcard_constraints:
    stage="|".join(map(re.escape, PLAN.stages)),
    strategy="|".join(PLAN.strategies),
    run="|".join(PLAN.sft_runs) or "no-sft-run",
    prun="|".join(map(re.escape, PLAN.preference_runs)) or "no-preference-run",
    dataset=(
        "|".join(map(re.escape, PLAN.grounding["splits"]))
        if PLAN.grounding
        else "none"
    ),
    split="[A-Za-z0-9]+",


localrules:
    all,
    report,


rule all:
    input:
        "results/report/index.html",
