"""On-policy preference pairs (`preference.pairs: on_policy`): the start model's own sampled
answers, checked against COCO GT, become the pairs reference_logps and train_preference read.
"""


rule build_preference_pairs:
    input:
        model=preference_start_model,
        data=on_policy_inputs(),
        nltk_data=nltk_data_input(),
        code=library(
            *CORE_CODE,
            "eval/decoding.py",
            "eval/chair.py",
            "eval/chair_lexicon.py",
            "eval/text_analysis.py",
            "train/datasets.py",
            "train/onpolicy_pairs.py",
        ),
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
    threads: THREADS
    resources:
        mem_mb=8000,
        gpu=config["compute"]["eval_gpus"],
    params:
        prompts=on_policy_prompts(),
        image_folder=on_policy_image_folder,
        instances=on_policy_gt("instances"),
        captions=on_policy_gt("captions"),
        generation=on_policy_generation(),
        settings=on_policy_settings(),
        analyzer=config["chair"].get("analyzer", "auto"),
    script:
        "../workflow_scripts/build_preference_pairs.py"
