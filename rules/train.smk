rule train_sft:
    input:
        model=sft_start_model,
        data=sft_inputs(),
        code=library(*TRAIN_CODE, "train/sft.py"),
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
        mem_mb=16000,
        gpu=config["compute"]["train_gpus"],
    params:
        launch=launcher,
        spec=job_spec(
            settings=sft_settings,
            train_file=sft_data("sft_train"),
            eval_file=sft_data("sft_test"),
            image_folder=sft_image_folder,
            checkpoint_dir="resources/checkpoints/{run}",
        ),
    shell:
        "{params.launch} train_sft --threads {threads} --spec {params.spec:q}"
        " start_model_dir={input.model:q} model_dir={output.model:q}"
        " state_path={output.state:q} metrics_path={output.metrics:q} > {log:q} 2>&1"


rule reference_logps:
    input:
        model=preference_start_model,
        data=preference_inputs(),
        code=library(*PREFERENCE_CODE),
    output:
        logps="results/preference/reference_logps.safetensors",
        summary="results/preference/reference_logps.json",
    log:
        "logs/reference_logps.log",
    benchmark:
        "benchmarks/reference_logps.tsv"
    conda:
        "../envs/mllm.yaml"
    threads: THREADS
    resources:
        mem_mb=8000,
        gpu=config["compute"]["eval_gpus"],
    params:
        launch=launcher,
        spec=job_spec(
            data_file=preference_data(),
            image_folder=preference_image_folder,
            max_length=settings("preference", "training", "max_length", default=2048),
            batch_size=settings("preference", "reference_batch_size", default=8),
            on_bad_record=settings("preference", "on_bad_record", default="raise"),
        ),
    shell:
        "{params.launch} reference_logps --threads {threads} --spec {params.spec:q}"
        " model_dir={input.model:q} output_path={output.logps:q}"
        " summary_path={output.summary:q} > {log:q} 2>&1"


rule train_preference:
    input:
        model=preference_start_model,
        reference="results/preference/reference_logps.safetensors",
        data=preference_inputs(),
        code=library(*PREFERENCE_CODE),
    output:
        model=directory("results/models/{prun}"),
        state="results/train/{prun}/trainer_state.json",
        metrics="results/train/{prun}/metrics.json",
    log:
        "logs/train_preference/{prun}.log",
    benchmark:
        "benchmarks/train_preference/{prun}.tsv"
    conda:
        "../envs/mllm.yaml"
    threads: THREADS
    resources:
        mem_mb=16000,
        gpu=config["compute"]["train_gpus"],
    params:
        launch=launcher,
        spec=job_spec(
            preference=preference_run_settings,
            settings=settings("preference", "training"),
            data_file=preference_data(),
            image_folder=preference_image_folder,
            checkpoint_dir="resources/checkpoints/{prun}",
        ),
    shell:
        "{params.launch} train_preference --threads {threads} --spec {params.spec:q}"
        " start_model_dir={input.model:q} reference_path={input.reference:q}"
        " model_dir={output.model:q} state_path={output.state:q}"
        " metrics_path={output.metrics:q} > {log:q} 2>&1"
