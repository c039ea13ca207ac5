rule report:
    input:
        chair=chair_outputs(),
        code=library("report"),
    output:
        "results/report/index.html",
    log:
        "logs/report.log",
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        runs=[[stage, strategy] for stage in STAGES for strategy in STRATEGIES],
        world=config["world"],
    script:
        "../workflow_scripts/render_report.py"
