"""Visual grounding (exercise task 2.5): the world's REC files → grounding SFT (stage
`grounding`) → Acc@0.5 per stage × dataset × split, one job per stage."""


rule prepare_grounding:
    input:
        train=[rec_file(name) for name in PLAN.grounding["train_files"]],
        val=[rec_file(name) for name in PLAN.rec_val_files],
        images=grounding_training_images(),
        code=code("workflow_scripts/prepare_grounding.py"),
    output:
        train="results/grounding/data/train.json",
        val="results/grounding/data/val.json",
        train_summary="results/grounding/data/train.summary.json",
        val_summary="results/grounding/data/val.summary.json",
    log:
        "logs/prepare_grounding.log",
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        image_folder=image_root,
        options=grounding_options("format", "on_bad_record", "seed"),
    script:
        "../workflow_scripts/prepare_grounding.py"


rule preflight_grounding:
    input:
        model=PLAN.model_dir(PLAN.grounding["start"]),
        data="results/grounding/data/train.json",
        images=grounding_training_images(),
        code=code("mllm.train.preflight"),
    output:
        summary="results/preflight/grounding.json",
    log:
        "logs/preflight_grounding.log",
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=8000,
    params:
        launch=launcher,
        spec=job_spec(
            kind="sft",
            max_length=settings("grounding", "training", "max_length"),
            refuse_over_length=False,
            image_folder=image_root,
        ),
    shell:
        "{params.launch} mllm.train.preflight preflight_records --threads {threads}"
        " --spec {params.spec:q} start_model_dir={input.model:q} data_file={input.data:q}"
        " summary_path={output.summary:q} > {log:q} 2>&1"


rule train_grounding:
    input:
        model=PLAN.model_dir(PLAN.grounding["start"]),
        train="results/grounding/data/train.json",
        preflight="results/preflight/grounding.json",
        val="results/grounding/data/val.json",
        images=grounding_training_images(),
        code=code("mllm.train.sft"),
    output:
        model=directory(PLAN.model_dir(GROUNDING_STAGE)),
        state=f"results/train/{GROUNDING_STAGE}/trainer_state.json",
        metrics=f"results/train/{GROUNDING_STAGE}/metrics.json",
    log:
        "logs/train_grounding.log",
    benchmark:
        "benchmarks/train_grounding.tsv"
    conda:
        "../envs/mllm.yaml"
    threads: THREADS
    resources:
        **TRAINING_RESOURCES,
        mem_mb=16000,
    params:
        launch=launcher,
        spec=job_spec(
            settings=settings("grounding", "training"),
            image_folder=image_root,
            checkpoint_dir=f"resources/checkpoints/{GROUNDING_STAGE}",
        ),
    shell:
        "{params.launch} mllm.train.sft train_sft --threads {threads} --spec {params.spec:q}"
        " start_model_dir={input.model:q} train_file={input.train:q} eval_file={input.val:q}"
        " model_dir={output.model:q} state_path={output.state:q}"
        " metrics_path={output.metrics:q} > {log:q} 2>&1"


rule grounding_eval:
    """One job per stage scores every split (one model load); a split's files are what it alone
    would give."""
    input:
        model=stage_model,
        referents=PLAN.grounding_split_files,
        images=image_manifests(*PLAN.grounding_split_files),
        code=code("workflow_scripts/grounding_eval.py"),
    output:
        metrics=grounding_outputs("json"),
        answers=grounding_outputs("jsonl"),
    log:
        "logs/grounding_eval/{stage}.log",
    benchmark:
        "benchmarks/grounding_eval/{stage}.tsv"
    conda:
        "../envs/mllm.yaml"
    threads: EVAL_THREADS
    resources:
        mem_mb=8000,
        gpu=EVAL_GPUS,
    params:
        splits=PLAN.grounding_splits,
        image_folder=image_root,
        options=grounding_options("format", "on_bad_record"),
        settings=settings("grounding", "eval"),
    script:
        "../workflow_scripts/grounding_eval.py"
