"""The real world: downloads (or local files the config names) imported into the world's table.

Downloads land in resources/downloads/ with a provenance JSON (sha256, resolved revision) and run
where the network is (`localrule`); `import_world_file` turns each into its world file, rewriting
relative image paths to resolve from the world's image root (mllm.data.world_import).
"""

from mllm.workflow.world import (
    DOWNLOADED,
    POPE_IMAGES,
    REC_CONVERTED,
    REC_PARQUET,
    RealWorld,
    converted_rec,
)

REAL_WORLD = RealWorld(
    settings("real", default={}),
    PLAN.rec_files,
    train_annotations=PLAN.pair_source == "on_policy",
    rec_splits=PLAN.grounding["splits"] if PLAN.grounding else {},
)
# The image folder each world file reads (rules/images.smk: index_images).
WORLD_IMAGES = REAL_WORLD.image_folders


rule download_model:
    output:
        model=directory(BASE_MODEL),
        provenance=f"{BASE_MODEL}.provenance.json",
    log:
        "logs/download_model.log",
    localrule: True
    conda:
        "../../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
    params:
        source=settings("model", "source"),
        revision=settings("model", "revision", default=None),
        family=settings("model", "family"),
        min_pixels=settings("model", "min_pixels", default=None),
        max_pixels=settings("model", "max_pixels", default=None),
        trust_remote_code=settings("real", "trust_remote_code", default=False),
    script:
        "../../workflow_scripts/download_model.py"


rule download_coco_annotations:
    output:
        files=REAL_WORLD.downloads("copy"),
        provenance=f"{DOWNLOADED['coco_annotations']}/provenance.json",
    log:
        "logs/download_coco_annotations.log",
    localrule: True
    conda:
        "../../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=8000,
    params:
        source=settings("real", "coco_annotations"),
        sha256=settings("real", "coco_annotations_sha256"),
    script:
        "../../workflow_scripts/download_coco_annotations.py"


rule download_benchmark:
    output:
        benchmark=DOWNLOADED["benchmark"],
        provenance=f"{DOWNLOADED['benchmark']}.provenance.json",
    log:
        "logs/download_benchmark.log",
    localrule: True
    conda:
        "../../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        source=settings("real", "benchmark"),
        sha256=settings("real", "benchmark_sha256"),
    script:
        "../../workflow_scripts/download_benchmark.py"


rule download_rec_files:
    output:
        files=[f"{DOWNLOADED['rec']}/{name}" for name in REAL_WORLD.shikra_rec_files],
        provenance=f"{DOWNLOADED['rec']}/provenance.json",
    log:
        "logs/download_rec_files.log",
    localrule: True
    conda:
        "../../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        source=settings("real", "rec_annotations"),
        sha256=settings("real", "rec_annotations_sha256"),
        names=REAL_WORLD.shikra_rec_files,
    script:
        "../../workflow_scripts/download_rec_files.py"


rule download_coco_train_images:
    output:
        images=directory(DOWNLOADED["coco_train_images"]),
        provenance=f"{DOWNLOADED['coco_train_images']}.provenance.json",
    log:
        "logs/download_coco_train_images.log",
    localrule: True
    conda:
        "../../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        source=settings("real", "rec_images"),
        sha256=settings("real", "rec_images_sha256"),
    script:
        "../../workflow_scripts/download_coco_train_images.py"


rule download_preference_parquet:
    output:
        shards=directory(DOWNLOADED["preference_parquet"]),
        provenance=f"{DOWNLOADED['preference_parquet']}.provenance.json",
    log:
        "logs/download_preference_parquet.log",
    localrule: True
    conda:
        "../../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        source=settings("real", "preference_parquet", "source"),
        revision=settings("real", "preference_parquet", "revision"),
        shards=settings("real", "preference_parquet", "shards"),
    script:
        "../../workflow_scripts/download_preference_parquet.py"


rule download_rec_parquet:
    output:
        files=directory(f"{REC_PARQUET}/{{dataset}}"),
        provenance=f"{REC_PARQUET}/{{dataset}}.provenance.json",
    log:
        "logs/download_rec_parquet/{dataset}.log",
    localrule: True
    conda:
        "../../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        source=lambda wildcards: settings(
            "real", "rec_parquet", wildcards.dataset, "source"
        ),
        revision=lambda wildcards: settings(
            "real", "rec_parquet", wildcards.dataset, "revision"
        ),
        splits=lambda wildcards: REAL_WORLD.parquet_splits_of(wildcards.dataset),
    script:
        "../../workflow_scripts/download_rec_parquet.py"


rule convert_rec_parquet:
    input:
        release=f"{REC_PARQUET}/{{dataset}}",
        code=code("workflow_scripts/convert_rec_parquet.py"),
    output:
        rec=converted_rec("{dataset}", "{split}")["rec"],
        images=directory(converted_rec("{dataset}", "{split}")["images"]),
        summary=converted_rec("{dataset}", "{split}")["summary"],
    log:
        "logs/convert_rec_parquet/{dataset}_{split}.log",
    conda:
        "../../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=8000,
    params:
        on_bad_record=settings("grounding", "on_bad_record", default="raise"),
    script:
        "../../workflow_scripts/convert_rec_parquet.py"


rule import_world_file:
    input:
        source=REAL_WORLD.source,
        images=REAL_WORLD.images,
        code=code("workflow_scripts/import_world_file.py"),
    output:
        f"{WORLD_DIR}/{{path}}",
    log:
        "logs/import_world_file/{path}.log",
    wildcard_constraints:
        path="|".join(map(re.escape, REAL_WORLD.paths)),
    conda:
        "../../envs/mllm.yaml"
    threads: 1
    resources:
        mem_mb=8000,
    params:
        kind=REAL_WORLD.kind,
        image_folder=REAL_WORLD.image_folder,
        options=REAL_WORLD.options,
        image_root=IMAGE_ROOT,
    script:
        "../../workflow_scripts/import_world_file.py"


# POPE: built from instances_val.json by rules/pope.smk, unless `real.pope` imports the published
# files (official json lines with COCO val2014 images, or lmms-lab's parquet with images inside).
REAL_POPE = settings("real", "pope")

if REAL_POPE:

    ruleorder: import_pope > build_pope

    rule download_pope:
        output:
            folder=directory(DOWNLOADED["pope"]),
            provenance=f"{DOWNLOADED['pope']}.provenance.json",
        log:
            "logs/download_pope.log",
        localrule: True
        conda:
            "../../envs/mllm.yaml"
        threads: 1
        resources:
            mem_mb=2000,
        params:
            source=REAL_POPE["source"],
            format=REAL_POPE["format"],
            revision=REAL_POPE.get("revision"),
            sha256=REAL_POPE.get("sha256"),
        script:
            "../../workflow_scripts/download_pope.py"

    rule import_pope:
        input:
            folder=DOWNLOADED["pope"],
            code=code("workflow_scripts/import_pope.py"),
        output:
            **POPE_FILES,
            **(
                {"images": directory(POPE_IMAGES)}
                if REAL_POPE["format"] == "lmms_lab"
                else {}
            ),
        log:
            "logs/import_pope.log",
        conda:
            "../../envs/mllm.yaml"
        threads: 1
        resources:
            mem_mb=8000,
        params:
            format=REAL_POPE["format"],
            image_folder=REAL_POPE.get("images"),
            image_root=IMAGE_ROOT,
        script:
            "../../workflow_scripts/import_pope.py"


# The world's benchmarked jobs, for the report's overview (common.smk: job_benchmarks).
WORLD_JOBS = {}
# World file -> its download's provenance JSON (source, sha256, resolved revision), for the
# report's integrity lines.
# plain strings: the report's `script:` pickles its params, and a rule's output file object
# drags its rule (with unpicklable resource evaluators) along
WORLD_PROVENANCE = {
    WORLD_FILES["benchmark"]: str(rules.download_benchmark.output.provenance),
    **{
        rec_file(name): str(rules.download_rec_files.output.provenance)
        for name in PLAN.rec_files
    },
    **{
        path: f"{DOWNLOADED['pope']}.provenance.json"
        for path in (POPE_FILES.values() if REAL_POPE else ())
    },
}
# Conversion summaries the report shows beside the grounding scores (lmms-lab's val sizes).
WORLD_NOTES = REAL_WORLD.rec_summaries
# No check of a recipe over seeds here (demo.smk: bench/phenomena.py's).
WORLD_RECIPE_CHECKS = []
