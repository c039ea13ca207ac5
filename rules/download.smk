rule download_model:
    output:
        model=directory("resources/models/base"),
        provenance="resources/models/base.provenance.json",
    log:
        "logs/download_model.log",
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        source=settings("real", "model"),
        revision=settings("real", "model_revision"),
        trust_remote_code=settings("real", "trust_remote_code", default=False),
    script:
        "../workflow_scripts/download_model.py"


rule download_coco_annotations:
    output:
        instances="resources/coco/annotations/instances_val2014.json",
        captions="resources/coco/annotations/captions_val2014.json",
        provenance="resources/coco/annotations/provenance.json",
    log:
        "logs/download_coco_annotations.log",
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=8000,
    params:
        source=settings("real", "coco_annotations"),
        sha256=settings("real", "coco_annotations_sha256"),
    script:
        "../workflow_scripts/download_coco_annotations.py"


rule download_benchmark:
    output:
        benchmark="resources/benchmark/objhal_bench.jsonl",
        provenance="resources/benchmark/provenance.json",
    log:
        "logs/download_benchmark.log",
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        source=settings("real", "benchmark"),
        sha256=settings("real", "benchmark_sha256"),
    script:
        "../workflow_scripts/download_benchmark.py"
