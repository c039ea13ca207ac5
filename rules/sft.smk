"""Supervised fine-tuning (exercise task 2): one run per `sft:` entry, each a stage."""


rule preflight_sft:
    input:
        model=sft_start_model,
        data=WORLD_FILES["sft_train"],
        images=image_manifests(WORLD_FILES["sft_train"]),
        code=code("mllm.train.preflight"),
    output:
        summary="results/preflight/sft/{run}.json",
    log:
        "logs/preflight_sft/{run}.log",
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=8000,
    params:
        launch=launcher,
        spec=job_spec(
            kind="sft",
            max_length=lambda wildcards: sft_settings(wildcards).get("max_length"),
            refuse_over_length=False,
            image_folder=image_root,
        ),
    shell:
        "{params.launch} mllm.train.preflight preflight_records --threads {threads}"
        " --spec {params.spec:q} start_model_dir={input.model:q} data_file={input.data:q}"
        " summary_path={output.summary:q} > {log:q} 2>&1"


rule train_sft:
    input:
        model=sft_start_model,
        train=WORLD_FILES["sft_train"],
        preflight="results/preflight/sft/{run}.json",
        test=WORLD_FILES["sft_test"],
        images=image_manifests(WORLD_FILES["sft_train"], WORLD_FILES["sft_test"]),
        code=code("mllm.train.sft"),
    output:
        model=directory("results/models/{run}"),
        state="results/train/{run}/trainer_state.json",
        metrics="results/train/{run}/metrics.json",
    log:
        "logs/train_sft/{run}.log",
    benchmark:
        "benchmarks/train_sft/{run}.tsv"
    conda:
        "../envs/mllm.yaml"
    threads: THREADS
    resources:
        **TRAINING_RESOURCES,
        mem_mb=16000,
    params:
        launch=launcher,
        spec=job_spec(
            settings=sft_settings,
            image_folder=image_root,
            checkpoint_dir="resources/checkpoints/{run}",
        ),
    shell:
        "{params.launch} mllm.train.sft train_sft --threads {threads} --spec {params.spec:q}"
        " start_model_dir={input.model:q} train_file={input.train:q} eval_file={input.test:q}"
        " model_dir={output.model:q} state_path={output.state:q}"
        " metrics_path={output.metrics:q} > {log:q} 2>&1"
