from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/download.smk"
include: "rules/model.smk"
include: "rules/decode.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


wildcard_constraints:
    stage="|".join(STAGES),
    strategy="|".join(STRATEGIES),


localrules:
    all,
    report,


rule all:
    input:
        "results/report/index.html",
