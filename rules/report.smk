rule report:
    input:
        chair=chair_outputs(),
        yesno=yesno_outputs(),
        yesno_answers=[p.replace(".json", ".answers.jsonl") for p in yesno_outputs()],
        training=train_metrics_outputs(),
        states=[
            p.replace("metrics.json", "trainer_state.json")
            for p in train_metrics_outputs()
        ],
        grounding=grounding_outputs(),
        grounding_items=[p.replace(".json", ".jsonl") for p in grounding_outputs()],
        job_benchmarks=list(job_benchmarks()),
        benchmark=data_input("benchmark"),
        code=library("report", "eval/decoding.py", "data/images.py"),
    output:
        page=report(
            "results/report/index.html",
            caption="../report/index.rst",
            category="Results page",
        ),
        headline=report(
            "results/report/headline.tsv",
            caption="../report/headline.rst",
            category="Results page",
        ),
        figures=report(
            directory("results/report/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Curves",
        ),
    log:
        "logs/report.log",
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        runs=chair_runs(),
        stages=STAGES,
        preference_runs=PREFERENCE_RUNS,
        preference_start=PREFERENCE["start"] if PREFERENCE else None,
        benchmark_stages=list(job_benchmarks().values()),
        benchmark=data_path("benchmark"),
        image_folder=benchmark_image_folder,
        grounding_run=GROUNDING_STAGE if GROUNDING else None,
        grounding_image_folder=grounding_image_folder,
        world=config["world"],
        config=settings(),
    script:
        "../workflow_scripts/render_report.py"
