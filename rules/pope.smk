"""POPE (object hallucination as yes/no questions): the question files built from the world's COCO
instances, whichever world it is (a real world may import the published files instead, see
rules/worlds/real.smk), and every stage's answers and metrics per negative-sampling setting.
"""


rule build_pope:
    input:
        instances=WORLD_FILES["instances"],
        code=code("workflow_scripts/build_pope.py"),
    output:
        **POPE_FILES,
    log:
        "logs/build_pope.log",
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        construction=settings("pope", "construction", default={}),
        image_prefix=f"{VAL_IMAGES}/",
    script:
        "../workflow_scripts/build_pope.py"


rule pope_eval:
    input:
        model=stage_model,
        questions=list(POPE_FILES.values()),
        images=image_manifests(*POPE_FILES.values()),
        code=code("workflow_scripts/pope_eval.py"),
    output:
        metrics=[f"results/pope/{{stage}}/{s}.json" for s in POPE_FILES],
        answers=[f"results/pope/{{stage}}/{s}.answers.jsonl" for s in POPE_FILES],
    log:
        "logs/pope_eval/{stage}.log",
    benchmark:
        "benchmarks/pope_eval/{stage}.tsv"
    conda:
        "../envs/mllm.yaml"
    threads: EVAL_THREADS
    resources:
        mem_mb=8000,
        gpu=EVAL_GPUS,
    params:
        settings_order=list(POPE_FILES),
        image_folder=image_root,
        settings=settings("pope", "eval"),
    script:
        "../workflow_scripts/pope_eval.py"
