rule train_sft:
    input:
        model=sft_start_model,
        data=sft_inputs(),
        code=library("model", "data", "train"),
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
        settings=sft_settings,
        train_file=sft_data("sft_train"),
        eval_file=sft_data("sft_test"),
        image_folder=sft_image_folder,
        checkpoint_dir="resources/checkpoints/{run}",
    script:
        "../workflow_scripts/train_sft.py"
