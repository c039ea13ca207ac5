rule build_chair_cache:
    input:
        instances=data_input("instances"),
        captions=data_input("captions"),
        benchmark=data_input("benchmark"),
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
