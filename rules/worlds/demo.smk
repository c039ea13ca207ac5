"""The demo world: a seeded synthetic COCO-style world and the tiny base model pre-trained on it.

It writes the world's table of files (mllm.workflow.world) and the starting model; the demo-only
steps (tokenizer, vision warm-up, caption pre-training) live here and in mllm/demo.
"""

from mllm.workflow.world import DEMO_PRETRAIN, DEMO_REC_TRAIN, demo_images

# The image folder each world file reads (rules/images.smk: index_images).
WORLD_IMAGES = demo_images(PLAN.rec_files)


rule generate_demo_world:
    input:
        code=code("workflow_scripts/generate_demo_world.py"),
    output:
        **WORLD_FILES,
        rec=[rec_file(name) for name in sorted({*PLAN.rec_files, DEMO_REC_TRAIN})],
        pretrain=DEMO_PRETRAIN,
        manifest=f"{WORLD_DIR}/manifest.json",
        images=directory(f"{WORLD_DIR}/images"),
    log:
        "logs/generate_demo_world.log",
    benchmark:
        "benchmarks/generate_demo_world.tsv"
    conda:
        "../../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        settings=settings("demo_world", default={}),
    script:
        "../../workflow_scripts/generate_demo_world.py"


rule build_tokenizer:
    input:
        corpus=[
            DEMO_PRETRAIN,
            WORLD_FILES["benchmark"],
            WORLD_FILES["sft_train"],
            WORLD_FILES["sft_test"],
            WORLD_FILES["preference"],
            rec_file(DEMO_REC_TRAIN),
        ],
        code=code("workflow_scripts/build_tokenizer.py"),
    output:
        directory("results/tokenizer"),
    log:
        "logs/build_tokenizer.log",
    conda:
        "../../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        settings=settings("tokenizer", default={}),
    script:
        "../../workflow_scripts/build_tokenizer.py"


rule warm_up_vision:
    input:
        instances=WORLD_FILES["train_instances"],
        images=image_manifests(WORLD_FILES["train_instances"]),
        code=code("workflow_scripts/warm_up_vision.py"),
    output:
        weights="results/models/vision_warmup/vpm.safetensors",
        metrics="results/models/vision_warmup/metrics.json",
    log:
        "logs/warm_up_vision.log",
    benchmark:
        "benchmarks/warm_up_vision.tsv"
    conda:
        "../../envs/mllm.yaml"
    threads: THREADS
    resources:
        mem_mb=4000,
        gpu=TRAIN_GPUS,
    params:
        images=f"{WORLD_DIR}/images/train",  # the folder of the train instances' file names
        vision=settings("architecture", "vision"),
        image_processing=settings("image_processing"),
        settings=settings("vision_warmup", default={}),
    script:
        "../../workflow_scripts/warm_up_vision.py"


rule build_base_model:
    input:
        train=DEMO_PRETRAIN,
        images=image_manifests(DEMO_PRETRAIN),
        tokenizer="results/tokenizer",
        vision="results/models/vision_warmup/vpm.safetensors",
        code=code("mllm.demo.base_model"),
    output:
        model=directory(BASE_MODEL),
        state="results/train/base/trainer_state.json",
        metrics="results/train/base/metrics.json",
    log:
        "logs/build_base_model.log",
    benchmark:
        "benchmarks/build_base_model.tsv"
    conda:
        "../../envs/mllm.yaml"
    threads: THREADS
    resources:
        **TRAINING_RESOURCES,
        mem_mb=8000,
    params:
        launch=launcher,
        spec=job_spec(
            architecture=settings("architecture"),
            image_processing=settings("image_processing"),
            settings=settings("base_model", default={}),
            image_folder=image_root,
            checkpoint_dir="resources/checkpoints/base",
        ),
    shell:
        "{params.launch} mllm.demo.base_model build_base_model --threads {threads}"
        " --spec {params.spec:q} train_file={input.train:q} tokenizer_dir={input.tokenizer:q}"
        " vision_weights={input.vision:q} model_dir={output.model:q}"
        " state_path={output.state:q} metrics_path={output.metrics:q} > {log:q} 2>&1"


# The world's benchmarked jobs, for the report's overview (common.smk: job_benchmarks).
WORLD_JOBS = {
    str(rules.generate_demo_world.benchmark): "",
    str(rules.warm_up_vision.benchmark): "",
    str(rules.build_base_model.benchmark): "base",
}
# World file -> its download's provenance JSON, for the report's integrity lines: none here, the
# demo world draws every file (their sha256 are in its manifest.json).
WORLD_PROVENANCE = {}
# The demo world's data needs no notes beside its scores (real.smk: conversion summaries).
WORLD_NOTES = []
# The check of the demo recipe over training seeds × threads (bench/phenomena.py), which the
# report quotes when the repository holds one; real worlds have none.
WORLD_RECIPE_CHECKS = [
    os.path.relpath(path)
    for path in [REPOSITORY / "docs" / "phenomena.json"]
    if path.exists()
]
