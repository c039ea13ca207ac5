rule build_tokenizer:
    input:
        world=DEMO_WORLD,
        code=library("data/tokenizer.py", "train/pretrain.py"),
    output:
        directory("results/tokenizer"),
    log:
        "logs/build_tokenizer.log",
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        vocab_size=settings("tokenizer", "vocab_size", default=1400),
        corpus=[
            f"{DEMO_WORLD}/{name}"
            for name in (
                "pretrain_captions.json",
                "objhal_bench.jsonl",
                "sft/train.json",
                "sft/test.json",
                "preference_train.json",
                "grounding/REC_ref3_train.jsonl",
            )
        ],
    script:
        "../workflow_scripts/build_tokenizer.py"


rule warm_up_vision:
    input:
        world=DEMO_WORLD,
        code=library(*CORE_CODE, "train/vision_warmup.py"),
    output:
        weights="results/models/vision_warmup/vpm.safetensors",
        metrics="results/models/vision_warmup/metrics.json",
    log:
        "logs/warm_up_vision.log",
    benchmark:
        "benchmarks/warm_up_vision.tsv"
    conda:
        "../envs/mllm.yaml"
    threads: THREADS
    resources:
        mem_mb=4000,
        gpu=config["compute"]["train_gpus"],
    params:
        instances=f"{DEMO_WORLD}/{DEMO_FILES['warmup_instances']}",
        images=f"{DEMO_WORLD}/images/train",
        vision=settings("architecture", "vision"),
        image_processing=settings("image_processing"),
        settings=settings("vision_warmup", default={}),
    script:
        "../workflow_scripts/warm_up_vision.py"


rule build_base_model:
    input:
        world=DEMO_WORLD,
        tokenizer="results/tokenizer",
        vision="results/models/vision_warmup/vpm.safetensors",
        code=library(*TRAIN_CODE, "data/tokenizer.py", "train/pretrain.py"),
    output:
        model=directory("results/models/base"),
        state="results/train/base/trainer_state.json",
        metrics="results/train/base/metrics.json",
    log:
        "logs/build_base_model.log",
    benchmark:
        "benchmarks/build_base_model.tsv"
    conda:
        "../envs/mllm.yaml"
    threads: THREADS
    resources:
        mem_mb=8000,
        gpu=config["compute"]["train_gpus"],
    params:
        launch=launcher,
        spec=job_spec(
            architecture=settings("architecture"),
            image_processing=settings("image_processing"),
            settings=settings("base_model", default={}),
            train_file=f"{DEMO_WORLD}/{DEMO_FILES['pretrain']}",
            image_folder=DEMO_WORLD,
            checkpoint_dir="resources/checkpoints/base",
        ),
    shell:
        "{params.launch} build_base_model --threads {threads} --spec {params.spec:q}"
        " tokenizer_dir={input.tokenizer:q} vision_weights={input.vision:q}"
        " model_dir={output.model:q} state_path={output.state:q}"
        " metrics_path={output.metrics:q} > {log:q} 2>&1"
