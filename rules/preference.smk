"""Preference alignment (exercise task 3): reference log-probs scored once with the start model,
then one DPO / NCA run per loss × β (each a stage) that reuses them. With `pairs: on_policy` the
pairs are the start model's own sampled answers, checked against the world's COCO GT."""

PREFERENCE_START = PLAN.model_dir(PLAN.preference["start"])


rule build_preference_pairs:
    input:
        model=PREFERENCE_START,
        prompts=WORLD_FILES["preference"],
        images=image_manifests(WORLD_FILES["preference"]),
        instances=WORLD_FILES["train_instances"],
        captions=WORLD_FILES["train_captions"],
        nltk_data=nltk_data_input(),
        code=code("workflow_scripts/build_preference_pairs.py"),
    output:
        pairs=ON_POLICY_PAIRS,
        summary="results/preference/pairs_summary.json",
        samples="results/preference/pairs_samples.jsonl",
    log:
        "logs/build_preference_pairs.log",
    benchmark:
        "benchmarks/build_preference_pairs.tsv"
    conda:
        "../envs/mllm.yaml"
    threads: EVAL_THREADS
    resources:
        mem_mb=8000,
        gpu=EVAL_GPUS,
    params:
        image_folder=image_root,
        generation=settings("decoding", "strategies", PLAN.on_policy_strategy),
        settings=PLAN.on_policy_settings(),
        analyzer=settings("chair", "analyzer"),
    script:
        "../workflow_scripts/build_preference_pairs.py"


rule reference_logps:
    input:
        model=PREFERENCE_START,
        pairs=preference_pairs(),
        images=image_manifests(WORLD_FILES["preference"]),
        preflight="results/preflight/preference.json",
        code=code("mllm.preference.reference"),
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
        **REFERENCE_RESOURCES,
        mem_mb=8000,
    params:
        launch=launcher,
        spec=job_spec(
            image_folder=image_root,
            max_length=settings("preference", "training", "max_length"),
            batch_size=settings("preference", "reference_batch_size"),
            on_bad_record=settings("preference", "on_bad_record"),
        ),
    shell:
        "{params.launch} mllm.preference.reference build_reference_logps --threads {threads}"
        " --spec {params.spec:q} model_dir={input.model:q} data_file={input.pairs:q}"
        " output_path={output.logps:q} summary_path={output.summary:q} > {log:q} 2>&1"


rule preflight_preference:
    input:
        model=PREFERENCE_START,
        data=preference_pairs(),
        images=image_manifests(WORLD_FILES["preference"]),
        code=code("mllm.train.preflight"),
    output:
        summary="results/preflight/preference.json",
    log:
        "logs/preflight_preference.log",
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=8000,
    params:
        launch=launcher,
        spec=job_spec(
            kind="preference",
            max_length=settings("preference", "training", "max_length"),
            refuse_over_length=False,
            image_folder=image_root,
        ),
    shell:
        "{params.launch} mllm.train.preflight preflight_records --threads {threads}"
        " --spec {params.spec:q} start_model_dir={input.model:q} data_file={input.data:q}"
        " summary_path={output.summary:q} > {log:q} 2>&1"


rule train_preference:
    input:
        model=PREFERENCE_START,
        reference="results/preference/reference_logps.safetensors",
        pairs=preference_pairs(),
        images=image_manifests(WORLD_FILES["preference"]),
        preflight="results/preflight/preference.json",
        code=code("mllm.preference.train"),
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
        **TRAINING_RESOURCES,
        mem_mb=16000,
    params:
        launch=launcher,
        spec=job_spec(
            preference=preference_run_settings,
            settings=settings("preference", "training"),
            image_folder=image_root,
            checkpoint_dir="resources/checkpoints/{prun}",
        ),
    shell:
        "{params.launch} mllm.preference.train train_preference --threads {threads}"
        " --spec {params.spec:q} start_model_dir={input.model:q} data_file={input.pairs:q}"
        " reference_path={input.reference:q} model_dir={output.model:q}"
        " state_path={output.state:q} metrics_path={output.metrics:q} > {log:q} 2>&1"
