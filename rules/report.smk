"""The results page: every metric of every stage, the training curves and the jobs' costs."""


rule report:
    input:
        chair=[f"results/chair/{stage}/{s}.json" for stage, s in PLAN.decodings],
        yesno=[f"results/yesno/{stage}.json" for stage in PLAN.yesno_stages],
        yesno_answers=[
            f"results/yesno/{stage}.answers.jsonl" for stage in PLAN.yesno_stages
        ],
        training=[f"results/train/{run}/metrics.json" for run in PLAN.trained_stages],
        states=[
            f"results/train/{run}/trainer_state.json" for run in PLAN.trained_stages
        ],
        grounding=[
            f"results/grounding/{stage}/{dataset}_{split}.json"
            for stage, dataset, split in PLAN.grounding_evaluations
        ],
        grounding_items=[
            f"results/grounding/{stage}/{dataset}_{split}.jsonl"
            for stage, dataset, split in PLAN.grounding_evaluations
        ],
        pope=[f"results/pope/{stage}/{s}.json" for stage, s in PLAN.pope_evaluations],
        pope_answers=[
            f"results/pope/{stage}/{s}.answers.jsonl"
            for stage, s in PLAN.pope_evaluations
        ],
        job_benchmarks=list(job_benchmarks()),
        benchmark=WORLD_FILES["benchmark"],
        images=report_images(),
        benchmark_files=list(PLAN.benchmark_files.values()),
        world_provenance=list(WORLD_PROVENANCE.values()),
        world_notes=WORLD_NOTES,
        recipe_checks=WORLD_RECIPE_CHECKS,
        code=code("workflow_scripts/render_report.py"),
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
        runs=PLAN.decodings,
        stages=PLAN.stages,
        preference_runs=PLAN.preference_losses,
        preference_start=PLAN.preference["start"] if PLAN.preference else None,
        benchmark_stages=list(job_benchmarks().values()),
        image_folder=image_root,
        grounding_run=GROUNDING_STAGE if PLAN.grounding else None,
        benchmark_files=PLAN.benchmark_files,
        world_provenance=WORLD_PROVENANCE,
        world=config["world"],
        config=settings(),
    script:
        "../workflow_scripts/render_report.py"
