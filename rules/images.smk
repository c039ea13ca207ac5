"""Content manifests of the world's image folders (mllm.workflow.image_manifest): every job that
reads images takes its folder's manifest as an input, so a replaced image reruns exactly those
jobs. Reading the Snakefile keeps written manifests up to date (mllm.workflow.image_manifest.ManifestInputs);
this rule writes the first one, once the folder exists."""


rule index_images:
    input:
        folder=lambda wildcards: WORLD_IMAGES.maker_of(wildcards.images),
        code=code("workflow_scripts/index_images.py"),
    output:
        f"{IMAGE_MANIFESTS}/{{images}}.json",
    log:
        "logs/index_images/{images}.log",
    wildcard_constraints:
        images="|".join(map(re.escape, WORLD_IMAGES.folders)) or "no-image-folder",
    # Under SLURM it runs beside Snakemake: hashing a folder (COCO val2014: ~6 GB, seconds) needs
    # no allocation, and every model job waits for it.
    localrule: True
    conda:
        "../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        folder=lambda wildcards: WORLD_IMAGES.folders[wildcards.images],
    script:
        "../workflow_scripts/index_images.py"
