rule report:
    input:
        chair=chair_outputs(),
        yesno=yesno_outputs(),
        training=train_metrics_outputs(),
        states=[
            p.replace("metrics.json", "trainer_state.json")
            for p in train_metrics_outputs()
        ],
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
        runs=chair_runs(),
        stages=STAGES,
        preference_runs=list(PREFERENCE_RUNS),
        preference_start=PREFERENCE["start"] if PREFERENCE else None,
        world=config["world"],
    script:
        "../workflow_scripts/render_report.py"
