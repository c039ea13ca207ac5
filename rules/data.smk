rule generate_demo_world:
    input:
        library("demo"),
    output:
        directory(DEMO_WORLD),
    log:
        "logs/generate_demo_world.log",
    benchmark:
        "benchmarks/generate_demo_world.tsv"
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        settings=settings("demo_world", default={}),
    script:
        "../workflow_scripts/generate_demo_world.py"
