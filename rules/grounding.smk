"""Visual grounding (exercise task 2.5): REC data → grounding SFT → Acc@0.5 per dataset × split.

The demo world writes Shikra REC files; a real config points `grounding.annotations` at Shikra's
annotation zip (or a folder) and `grounding.images` at COCO train2014, both fetched by rules.
"""


rule prepare_grounding:
    input:
        data=grounding_files(GROUNDING["train_files"] + grounding_val_files()),
        code=library("atomic.py", "data/errors.py", "data/grounding.py"),
    output:
        train="results/grounding/data/train.json",
        val="results/grounding/data/val.json",
        train_summary="results/grounding/data/train.summary.json",
        val_summary="results/grounding/data/val.summary.json",
    log:
        "logs/prepare_grounding.log",
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        sources={
            "train": [f"{grounding_folder()}/{n}" for n in GROUNDING["train_files"]],
            "val": [f"{grounding_folder()}/{n}" for n in grounding_val_files()],
        },
        image_folder=grounding_image_folder,
        format=GROUNDING.get("format", "auto"),
        on_bad_record=GROUNDING.get("on_bad_record", "error"),
        seed=GROUNDING.get("seed", 0),
    script:
        "../workflow_scripts/prepare_grounding.py"


rule train_grounding:
    input:
        model=model_of(GROUNDING["start"]),
        train="results/grounding/data/train.json",
        val="results/grounding/data/val.json",
        images=grounding_files([]),
        code=library(*TRAIN_CODE, "train/sft.py"),
    output:
        model=directory(f"results/models/{GROUNDING_STAGE}"),
        state=f"results/train/{GROUNDING_STAGE}/trainer_state.json",
        metrics=f"results/train/{GROUNDING_STAGE}/metrics.json",
    log:
        "logs/train_grounding.log",
    benchmark:
        "benchmarks/train_grounding.tsv"
    conda:
        "../envs/mllm.yaml"
    threads: THREADS
    resources:
        mem_mb=16000,
        gpu=config["compute"]["train_gpus"],
    params:
        launch=launcher,
        spec=job_spec(
            settings=settings("grounding", "training"),
            image_folder=grounding_image_folder,
            checkpoint_dir=f"resources/checkpoints/{GROUNDING_STAGE}",
        ),
    shell:
        "{params.launch} train_sft --threads {threads} --spec {params.spec:q}"
        " start_model_dir={input.model:q} train_file={input.train:q} eval_file={input.val:q}"
        " model_dir={output.model:q} state_path={output.state:q}"
        " metrics_path={output.metrics:q} > {log:q} 2>&1"


rule grounding_eval:
    input:
        model=stage_model,
        data=grounding_split_input,
        code=library(*GROUNDING_CODE, "eval/decoding.py", "eval/grounding.py"),
    output:
        metrics="results/grounding/{stage}/{dataset}_{split}.json",
        answers="results/grounding/{stage}/{dataset}_{split}.jsonl",
    log:
        "logs/grounding_eval/{stage}/{dataset}_{split}.log",
    benchmark:
        "benchmarks/grounding_eval/{stage}/{dataset}_{split}.tsv"
    conda:
        "../envs/mllm.yaml"
    threads: THREADS
    resources:
        mem_mb=8000,
        gpu=config["compute"]["eval_gpus"],
    params:
        source=grounding_split_source,
        image_folder=grounding_image_folder,
        format=GROUNDING.get("format", "auto"),
        on_bad_record=GROUNDING.get("on_bad_record", "error"),
        generation=settings("grounding", "eval", "generation"),
        batch_size=settings("grounding", "eval", "batch_size", default=32),
        seed=settings("grounding", "eval", "seed", default=0),
    script:
        "../workflow_scripts/grounding_eval.py"


rule download_rec_files:
    output:
        files=[
            f"resources/grounding/{name}"
            for name in sorted({*GROUNDING["train_files"], *grounding_eval_files()})
        ],
        provenance="resources/grounding/provenance.json",
    log:
        "logs/download_rec_files.log",
    localrule: True
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        source=GROUNDING.get("annotations"),
        sha256=GROUNDING.get("annotations_sha256"),
        names=sorted({*GROUNDING["train_files"], *grounding_eval_files()}),
    script:
        "../workflow_scripts/download_rec_files.py"


rule download_coco_train_images:
    output:
        images=directory("resources/coco/train2014"),
        provenance="resources/coco/train2014.provenance.json",
    log:
        "logs/download_coco_train_images.log",
    localrule: True
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        source=GROUNDING.get(
            "images", "http://images.cocodataset.org/zips/train2014.zip"
        ),
        sha256=GROUNDING.get("images_sha256"),
    script:
        "../workflow_scripts/download_coco_train_images.py"
