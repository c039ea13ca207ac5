"""Decoding and evaluation of every stage: benchmark decoding per strategy, CHAIR against the
world's COCO ground truth, and yes/no accuracy on the SFT test set."""


rule decode:
    input:
        model=stage_model,
        benchmark=WORLD_FILES["benchmark"],
        images=image_manifests(WORLD_FILES["benchmark"]),
        code=code("workflow_scripts/decode.py"),
    output:
        "results/decode/{stage}/{strategy}.jsonl",
    log:
        "logs/decode/{stage}/{strategy}.log",
    benchmark:
        "benchmarks/decode/{stage}/{strategy}.tsv"
    conda:
        "../envs/mllm.yaml"
    threads: EVAL_THREADS
    resources:
        mem_mb=8000,
        gpu=EVAL_GPUS,
    params:
        generation=generation_kwargs,
        batch_size=settings("decoding", "batch_size"),
        seed=settings("decoding", "seed"),
        image_folder=image_root,
        trust_remote_code=settings("real", "trust_remote_code", default=False),
    script:
        "../workflow_scripts/decode.py"


rule build_chair_cache:
    input:
        instances=WORLD_FILES["instances"],
        captions=WORLD_FILES["captions"],
        benchmark=WORLD_FILES["benchmark"],
        nltk_data=nltk_data_input(),
        code=code("workflow_scripts/build_chair_cache.py"),
    output:
        "results/chair/gt_cache.json",
    log:
        "logs/build_chair_cache.log",
    benchmark:
        "benchmarks/build_chair_cache.tsv"
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        analyzer=settings("chair", "analyzer"),
    script:
        "../workflow_scripts/build_chair_cache.py"


rule chair:
    input:
        answers="results/decode/{stage}/{strategy}.jsonl",
        cache="results/chair/gt_cache.json",
        nltk_data=nltk_data_input(),
        code=code("workflow_scripts/chair.py"),
    output:
        "results/chair/{stage}/{strategy}.json",
    log:
        "logs/chair/{stage}/{strategy}.log",
    # Under SLURM it runs beside Snakemake: a second of bookkeeping per decoding, not worth a
    # queue wait and an allocation each.
    localrule: True
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../workflow_scripts/chair.py"


rule yesno_accuracy:
    input:
        model=stage_model,
        test=WORLD_FILES["sft_test"],
        images=image_manifests(WORLD_FILES["sft_test"]),
        code=code("workflow_scripts/yesno_accuracy.py"),
    output:
        metrics="results/yesno/{stage}.json",
        answers="results/yesno/{stage}.answers.jsonl",
    log:
        "logs/yesno_accuracy/{stage}.log",
    benchmark:
        "benchmarks/yesno_accuracy/{stage}.tsv"
    conda:
        "../envs/mllm.yaml"
    threads: EVAL_THREADS
    resources:
        mem_mb=8000,
        gpu=EVAL_GPUS,
    params:
        image_folder=image_root,
        settings=settings("yesno"),
    script:
        "../workflow_scripts/yesno_accuracy.py"


rule fetch_nltk_data:
    output:
        directory("resources/nltk_data"),
    log:
        "logs/fetch_nltk_data.log",
    localrule: True
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../workflow_scripts/fetch_nltk_data.py"
