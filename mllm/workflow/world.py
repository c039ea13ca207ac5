"""The world boundary: one table of named files that every world writes, at the same paths.

The demo world (rules/worlds/demo.smk) draws them; the real world (rules/worlds/real.smk)
downloads and converts them. Every rule downstream reads these paths and never asks which world
it is in. Names follow the exercise's files (objhal_bench.jsonl, COCO annotations, sft/train.json,
Shikra's REC files, preference_train.json).

Image references inside world files are base64, absolute paths, or paths relative to
``IMAGE_ROOT``: a real world's conversion rules rewrite relative paths to hold there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

WORLD_DIR = "resources/world"
IMAGE_ROOT = WORLD_DIR
BASE_MODEL = "resources/models/base"
REC_DIR = f"{WORLD_DIR}/grounding"
IMAGE_MANIFESTS = "results/image_manifests"  # mllm.workflow.image_manifest

WORLD_FILES = {
    # the detailed-description benchmark and the COCO ground truth of its images (CHAIR)
    "benchmark": f"{WORLD_DIR}/objhal_bench.jsonl",
    "instances": f"{WORLD_DIR}/annotations/instances_val.json",
    "captions": f"{WORLD_DIR}/annotations/captions_val.json",
    # yes/no SFT (exercise task 2)
    "sft_train": f"{WORLD_DIR}/sft/train.json",
    "sft_test": f"{WORLD_DIR}/sft/test.json",
    # preference pairs (exercise task 3)
    "preference": f"{WORLD_DIR}/preference_train.json",
    # COCO ground truth of the training images: on-policy pairs' GT (the demo's warm-up boxes)
    "train_instances": f"{WORLD_DIR}/annotations/instances_train.json",
    "train_captions": f"{WORLD_DIR}/annotations/captions_train.json",
}


# POPE question files, one per negative-sampling setting (mllm.data.pope): built from the
# world's instances_val.json by rules/pope.smk, or imported from the published files
POPE_SETTINGS = ("random", "popular", "adversarial")
POPE_DIR = f"{WORLD_DIR}/pope"
POPE_FILES = {setting: f"{POPE_DIR}/{setting}.jsonl" for setting in POPE_SETTINGS}
POPE_IMAGES = f"{POPE_DIR}/images"  # the images of an imported lmms-lab/POPE
# Where the file names of instances_val.json resolve, relative to IMAGE_ROOT: the demo world
# draws its val images there; a real world that builds POPE puts COCO val2014 there.
VAL_IMAGES = "images/val"


def rec_file(name: str) -> str:
    """The path of one REC file (Shikra's name, e.g. ``REC_refcoco_unc_val.jsonl``)."""
    return f"{REC_DIR}/{name}"


@dataclass(frozen=True)
class WorldImages:
    """The image folders a world's files read, each with a content manifest that the jobs reading
    it take as an input (mllm.workflow.image_manifest): a replaced image reruns exactly them.

    ``folders``: name -> folder; ``read_by``: world file -> name of the folder its images come
    from (absent: none, e.g. base64 images); ``made_by``: name -> the rule output that makes the
    folder (absent: a folder the config gives).
    """

    folders: Mapping[str, str]
    read_by: Mapping[str, str]
    made_by: Mapping[str, str]

    def manifest(self, name: str) -> str:
        return f"{IMAGE_MANIFESTS}/{name}.json"

    def names_of(self, world_files: Sequence[str]) -> list[str]:
        """The folders the images of ``world_files`` come from, by name."""
        return sorted({self.read_by[path] for path in world_files if path in self.read_by})

    def maker_of(self, name: str) -> list[str]:
        """``index_images``' input: the rule output that makes folder ``name``, if one does."""
        return [self.made_by[name]] if name in self.made_by else []


DEMO_PRETRAIN = f"{WORLD_DIR}/pretrain_captions.json"
DEMO_REC_TRAIN = "REC_ref3_train.jsonl"  # in the tokenizer's corpus, with or without grounding


def demo_images(rec_files: Sequence[str]) -> WorldImages:
    """The demo world's split folders: ``train`` images serve every training set, ``val`` the
    benchmark and ``test`` the SFT test and the grounding evaluations (mllm.demo.world)."""
    splits = ("train", "val", "test")
    read_by = {
        WORLD_FILES["benchmark"]: "val",
        WORLD_FILES["sft_train"]: "train",
        WORLD_FILES["sft_test"]: "test",
        WORLD_FILES["preference"]: "train",
        WORLD_FILES["train_instances"]: "train",  # the vision warm-up's boxes
        DEMO_PRETRAIN: "train",
        rec_file(DEMO_REC_TRAIN): "train",
        **{path: "val" for path in POPE_FILES.values()},  # built from instances_val.json
    }
    for name in rec_files:
        read_by.setdefault(rec_file(name), "test")
    return WorldImages(
        folders={split: f"{WORLD_DIR}/images/{split}" for split in splits},
        read_by=read_by,
        made_by={split: f"{WORLD_DIR}/images" for split in splits},
    )


# --- the real world: where each world file comes from ------------------------------------------

DOWNLOADS = "resources/downloads"
DOWNLOADED = {
    "benchmark": f"{DOWNLOADS}/objhal_bench.jsonl",
    "coco_annotations": f"{DOWNLOADS}/coco/annotations",
    "coco_train_images": f"{DOWNLOADS}/coco/train2014",  # the RefCOCO family's images
    "rec": f"{DOWNLOADS}/grounding",
    "pope": f"{DOWNLOADS}/pope",  # the published POPE files, when `real.pope` imports them
    "preference_parquet": f"{DOWNLOADS}/rlaif_v",  # RLAIF-V's selected parquet shards
}
REC_PARQUET = f"{DOWNLOADS}/refcoco_parquet"  # /{dataset}: lmms-lab's parquet release
REC_CONVERTED = f"{DOWNLOADS}/grounding_parquet"  # /{dataset}_{split}.{jsonl,images,summary.json}


def converted_rec(dataset: str, split: str) -> dict[str, str]:
    """The REC file, image folder and summary converted from one lmms-lab split."""
    stem = f"{REC_CONVERTED}/{dataset}_{split}"
    return {"rec": f"{stem}.jsonl", "images": f"{stem}.images", "summary": f"{stem}.summary.json"}


def _rec_images_name(folder: str) -> str:
    """A REC file's image folder by name: COCO train2014, or one converted lmms-lab split's."""
    if folder == DOWNLOADED["coco_train_images"]:
        return "coco_train_images"
    return folder.rsplit("/", 1)[-1].replace(".", "_")


@dataclass(frozen=True)
class WorldSource:
    """What one real world file is imported from (mllm.data.world_import)."""

    path: str  # a download rule's output or a local file the config names
    kind: str  # records (JSON list) | jsonl | copy | rlaif_v (a folder of parquet shards)
    image_folder: str | None = None  # where its relative image paths resolve
    options: Mapping | None = None  # the conversion's options (rlaif_v: max_rows, on_bad_record)


class RealWorld:
    """Where each world file of a real config comes from. Its methods are Snakemake input and
    param functions of ``import_world_file`` (wildcard ``path``: the world file below WORLD_DIR).

    ``real`` is the config's ``real:`` section; ``rec_files`` the REC files the grounding stage
    names and ``rec_splits`` its dataset -> split -> REC file (the splits ``real.rec_parquet``
    may provide); ``train_annotations``: COCO train2014 GT is needed (on-policy pairs).
    """

    def __init__(
        self,
        real: Mapping,
        rec_files: Sequence[str],
        train_annotations: bool,
        rec_splits: Mapping[str, Mapping[str, str]] | None = None,
    ):
        coco = DOWNLOADED["coco_annotations"]
        splits = {"val": "val2014", **({"train": "train2014"} if train_annotations else {})}
        sources = {
            WORLD_FILES["benchmark"]: WorldSource(
                DOWNLOADED["benchmark"], "jsonl", real.get("benchmark_images")
            )
        }
        for split, coco_split in splits.items():
            for kind in ("instances", "captions"):
                sources[f"{WORLD_DIR}/annotations/{kind}_{split}.json"] = WorldSource(
                    f"{coco}/{kind}_{coco_split}.json", "copy"
                )
        for name in ("sft_train", "sft_test"):
            if name in real:
                sources[WORLD_FILES[name]] = WorldSource(
                    real[name], "records", real.get("sft_images")
                )
        if "preference" in real:
            sources[WORLD_FILES["preference"]] = WorldSource(
                real["preference"], "records", real.get("preference_images")
            )
        if "preference_parquet" in real:
            parquet = real["preference_parquet"]
            sources[WORLD_FILES["preference"]] = WorldSource(
                DOWNLOADED["preference_parquet"],
                "rlaif_v",
                options={k: parquet[k] for k in ("max_rows", "on_bad_record") if k in parquet},
            )
        parquet_releases = real.get("rec_parquet") or {}
        # (dataset, split) of every REC file an lmms-lab release provides, by file name
        self.parquet_splits: dict[str, tuple[str, str]] = {
            name: (dataset, split)
            for dataset, splits in (rec_splits or {}).items()
            if dataset in parquet_releases
            for split, name in splits.items()
        }
        self.downloaded_image_folders = {DOWNLOADED["coco_train_images"]}  # a rule makes these
        for name in rec_files:
            if name in self.parquet_splits:
                converted = converted_rec(*self.parquet_splits[name])
                sources[rec_file(name)] = WorldSource(
                    converted["rec"], "jsonl", converted["images"]
                )
                self.downloaded_image_folders.add(converted["images"])
            else:
                sources[rec_file(name)] = WorldSource(
                    f"{DOWNLOADED['rec']}/{name}", "jsonl", DOWNLOADED["coco_train_images"]
                )
        self.shikra_rec_files = [name for name in rec_files if name not in self.parquet_splits]
        self.sources: dict[str, WorldSource] = sources

    @property
    def image_folders(self) -> WorldImages:
        """Each world file's image folder, named by the config key (or download) that gives it."""
        names = {
            WORLD_FILES["benchmark"]: "benchmark_images",
            WORLD_FILES["sft_train"]: "sft_images",
            WORLD_FILES["sft_test"]: "sft_images",
            WORLD_FILES["preference"]: "preference_images",
        }
        folders, read_by = {}, {}
        for path, source in self.sources.items():
            if source.image_folder is None:
                continue
            name = names.get(path) or _rec_images_name(source.image_folder)
            folders[name] = source.image_folder
            read_by[path] = name
        made_by = {
            name: folder
            for name, folder in folders.items()
            if folder in DOWNLOADED.values() or folder in self.downloaded_image_folders
        }
        return WorldImages(folders=folders, read_by=read_by, made_by=made_by)

    @property
    def paths(self) -> list[str]:
        """The world files this config provides, relative to WORLD_DIR."""
        return sorted(path.removeprefix(f"{WORLD_DIR}/") for path in self.sources)

    def downloads(self, kind: str) -> list[str]:
        """Sources of ``kind`` (e.g. ``copy``: the COCO annotation files to download)."""
        return sorted({s.path for s in self.sources.values() if s.kind == kind})

    def _of(self, wildcards) -> WorldSource:
        return self.sources[f"{WORLD_DIR}/{wildcards.path}"]

    def source(self, wildcards) -> str:
        return self._of(wildcards).path

    def kind(self, wildcards) -> str:
        return self._of(wildcards).kind

    def image_folder(self, wildcards) -> str | None:
        return self._of(wildcards).image_folder

    def options(self, wildcards) -> dict:
        return dict(self._of(wildcards).options or {})

    def images(self, wildcards) -> list[str]:
        """The image folder as an input where a rule downloads it: the world file is usable only
        once its images are there."""
        folder = self._of(wildcards).image_folder
        return [folder] if folder in self.downloaded_image_folders else []

    # --- lmms-lab's RefCOCO-family parquet releases -----------------------------------------

    def parquet_splits_of(self, dataset: str) -> list[str]:
        """The splits of ``dataset`` converted from its lmms-lab release."""
        return sorted(split for d, split in self.parquet_splits.values() if d == dataset)

    @property
    def rec_summaries(self) -> list[str]:
        """The conversion summary of every lmms-lab split (rows vs the standard split's size),
        which the report shows beside the grounding scores."""
        return sorted(converted_rec(*pair)["summary"] for pair in self.parquet_splits.values())
