rule decode:
    input:
        model=stage_model,
        benchmark=data_input("benchmark"),
        code=library(*CORE_CODE, "eval/decoding.py"),
    output:
        "results/decode/{stage}/{strategy}.jsonl",
    log:
        "logs/decode/{stage}/{strategy}.log",
    benchmark:
        "benchmarks/decode/{stage}/{strategy}.tsv"
    conda:
        "../envs/mllm.yaml"
    threads: THREADS
    resources:
        mem_mb=8000,
        gpu=config["compute"]["eval_gpus"],
    params:
        generation=generation_kwargs,
        batch_size=config["decoding"]["batch_size"],
        seed=config["decoding"]["seed"],
        benchmark=data_path("benchmark"),
        image_folder=benchmark_image_folder,
        trust_remote_code=config.get("real", {}).get("trust_remote_code", False),
    script:
        "../workflow_scripts/decode.py"
