rule build_chair_cache:
    input:
        instances=data_input("instances"),
        captions=data_input("captions"),
        benchmark=data_input("benchmark"),
        nltk_data=nltk_data_input(),
        code=library("eval/chair.py", "eval/chair_lexicon.py", "eval/text_analysis.py"),
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
        instances=[data_path("instances")],
        captions=[data_path("captions")],
        benchmark=data_path("benchmark"),
        analyzer=config["chair"].get("analyzer", "auto"),
    script:
        "../workflow_scripts/build_chair_cache.py"


rule chair:
    input:
        answers="results/decode/{stage}/{strategy}.jsonl",
        cache="results/chair/gt_cache.json",
        nltk_data=nltk_data_input(),
        code=library("eval/chair.py", "eval/chair_lexicon.py", "eval/text_analysis.py"),
    output:
        "results/chair/{stage}/{strategy}.json",
    log:
        "logs/chair/{stage}/{strategy}.log",
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
        data=sft_inputs(),
        code=library(*CORE_CODE, "eval/decoding.py", "eval/yesno.py"),
    output:
        metrics="results/yesno/{stage}.json",
        answers="results/yesno/{stage}.answers.jsonl",
    log:
        "logs/yesno_accuracy/{stage}.log",
    benchmark:
        "benchmarks/yesno_accuracy/{stage}.tsv"
    conda:
        "../envs/mllm.yaml"
    threads: THREADS
    resources:
        mem_mb=8000,
        gpu=config["compute"]["eval_gpus"],
    params:
        test_file=sft_data("sft_test"),
        image_folder=sft_image_folder,
        generation=settings("yesno", "generation"),
        batch_size=settings("yesno", "batch_size", default=16),
        seed=settings("yesno", "seed", default=0),
    script:
        "../workflow_scripts/yesno_accuracy.py"


rule fetch_nltk_data:
    output:
        directory("resources/nltk_data"),
    log:
        "logs/fetch_nltk_data.log",
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../workflow_scripts/fetch_nltk_data.py"
