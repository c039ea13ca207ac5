"""The catalogue of known sources: where the real world's inputs are published.

``KNOWN_SOURCES`` keys: ``kind`` ("hub_model", "hub_dataset", "url" or "manual"),
``source`` (a Hub repo id or URL to pass to the fetchers; None when no URL can be fetched),
``page`` (where a person downloads a "manual" source), ``files`` (archive members or per-file
URLs), ``sha256`` and ``evidence`` (where each fact was read).

sha256 is None everywhere: none of these publishers lists a SHA-256 digest, and we do not invent
one. Pin the digest from the provenance of a first download in the experiment config instead.
"manual" sources sit behind Google Drive pages, which serve HTML rather than the file to a plain
HTTP client: download them by hand (or with gdown) and give the local path as the source.
"""

from __future__ import annotations

from mllm.data.grounding import SHIKRA_REC_FILES
from mllm.data.refcoco_parquet import LMMS_LAB_REPOS
from mllm.data.rlaif_v import REPO_ID as RLAIF_V_REPO

EXERCISE_DRIVE_FOLDER = "https://drive.google.com/drive/folders/1j2kw_UZZq1JXfZI644RGNZzbLIB7bTT5"
EXERCISE_README = (
    "README of Haoye17/THUNLP_Multimodal_Excercise, read through the copy in "
    "BryceK99/Multimodal_Excercise 'README copy.md'"
)
EXERCISE_MIRROR_RAW = (
    "https://raw.githubusercontent.com/qinyh10300/THUNLP_Multimodal_Excercise/"
    "f25aaae55c243a1f72d5091eda6c5dcf92c31666"
)
SHIKRA_REC_EVAL_FILES = list(SHIKRA_REC_FILES.values())
QWENVL_EVAL = "https://ofasys-wlcb.oss-cn-wulanchabu.aliyuncs.com/Qwen-VL/evaluation"

KNOWN_SOURCES: dict[str, dict] = {
    "exercise_model": {
        "kind": "hub_model",
        "source": "HaoyeZhang/MLLM_Excercise_Model",
        "revision": None,
        "sha256": None,
        "evidence": (
            f"{EXERCISE_README}, section 模型下载: https://huggingface.co/HaoyeZhang/MLLM_Excercise_Model; "
            "qinyh10300/THUNLP_Multimodal_Excercise_0 download_model.py loads the same id. "
            "No commit is cited anywhere: snapshot_model records the one it resolves."
        ),
    },
    "coco2014_annotations": {
        "kind": "url",
        "source": "https://images.cocodataset.org/annotations/annotations_trainval2014.zip",
        "files": [
            f"annotations/{kind}_{split}.json"
            for kind in ("captions", "instances")
            for split in ("train2014", "val2014")
        ],
        "sha256": None,
        "evidence": (
            "COCO download page; RLHF-V/RLAIF-V README (Object HalBench evaluation) fetches this URL. "
            "COCO publishes no digests; third-party download scripts check the sha1 "
            "8e0b9df54c175f1688400e98d1a97f292e726870 (not verified here)."
        ),
    },
    "coco2014_train_images": {
        "kind": "url",
        "source": "https://images.cocodataset.org/zips/train2014.zip",
        "sha256": None,
        "evidence": (
            "RefCOCO images are COCO train2014 (shikras/shikra "
            "config/_base_/dataset/DEFAULT_TEST_REC_VARIANT.py image_folder .../mscoco/images/train2014/)."
        ),
    },
    "objhal_bench": {
        "kind": "manual",
        "source": None,
        "page": EXERCISE_DRIVE_FOLDER,
        "files": ["objhal_bench.jsonl"],
        "sha256": None,
        "evidence": (
            f"{EXERCISE_README}, section 数据下载 (Google Drive folder). Related but not verified to "
            "be identical: the 300 Object HalBench questions at "
            "https://github.com/RLHF-V/RLAIF-V/blob/main/eval/data/obj_halbench_300_with_image.jsonl"
        ),
    },
    "preference_train": {
        "kind": "manual",
        "source": None,
        "page": EXERCISE_DRIVE_FOLDER,
        "files": ["preference_train.json"],
        "sha256": None,
        "evidence": f"{EXERCISE_README}, sections 任务3 and 数据下载 (Google Drive folder).",
    },
    "sft_images": {
        "kind": "manual",
        "source": None,
        "page": EXERCISE_DRIVE_FOLDER,
        "files": ["sft_images.tar.gz"],
        "sha256": None,
        "evidence": f"{EXERCISE_README}, section 数据下载: unpack into data/ and rename to images/.",
    },
    "chair_300": {
        "kind": "manual",
        "source": None,
        "page": EXERCISE_DRIVE_FOLDER,
        "files": ["chair_300.pkl"],
        "sha256": None,
        "evidence": (
            f"{EXERCISE_README}, section 数据下载. Optional: mllm.eval.chair rebuilds the same "
            "ground truth from coco2014_annotations."
        ),
    },
    "sft_train": {
        "kind": "url",
        "source": f"{EXERCISE_MIRROR_RAW}/data/train.json",
        "sha256": None,
        "evidence": (
            "data/train.json of the exercise repo, pinned to commit f25aaae of the mirror "
            "qinyh10300/THUNLP_Multimodal_Excercise, whose tree equals upstream a249593 (EXERCISE_SPEC.md)."
        ),
    },
    "sft_test": {
        "kind": "url",
        "source": f"{EXERCISE_MIRROR_RAW}/data/test.json",
        "sha256": None,
        "evidence": "data/test.json, pinned like sft_train.",
    },
    "shikra_annotations": {
        "kind": "manual",
        "source": None,
        "page": "https://drive.google.com/file/d/1CNLu1zJKPtliQEYCZlZ8ykH00ppInnyN/view",
        "files": [
            *SHIKRA_REC_EVAL_FILES,
            "REC_ref3_train.jsonl",
            "GC_genome196_train.jsonl",
            "CWB_flickr30k_train.jsonl",
            "GPT4GEN_BoxCoT_train.jsonl",
            "GPT4GEN_RD_BoxCoT_train.jsonl",
        ],
        "sha256": None,
        "evidence": (
            "shikras/shikra README (News 07/03) and docs/data.md: one zip of all annotation jsonl "
            "files; eval file names from config/_base_/dataset/DEFAULT_TEST_REC_VARIANT.py, train "
            "names from the exercise's data/prepare_grounding.py. Lines are {img_path, expression, "
            "bbox}. The folder layout inside the zip is not documented; fetch_file matches a member "
            "by file name."
        ),
    },
    "refcoco_qwenvl": {
        "kind": "url",
        "source": None,
        "files": {
            "refcoco_val": f"{QWENVL_EVAL}/refcoco/refcoco_val.jsonl",
            "refcoco_testA": f"{QWENVL_EVAL}/refcoco/refcoco_testA.jsonl",
            "refcoco_testB": f"{QWENVL_EVAL}/refcoco/refcoco_testB.jsonl",
            "refcoco+_val": f"{QWENVL_EVAL}/refcoco%2B/refcoco%2B_val.jsonl",
            "refcoco+_testA": f"{QWENVL_EVAL}/refcoco%2B/refcoco%2B_testA.jsonl",
            "refcoco+_testB": f"{QWENVL_EVAL}/refcoco%2B/refcoco%2B_testB.jsonl",
            "refcocog_val": f"{QWENVL_EVAL}/refcocog/refcocog_val.jsonl",
            "refcocog_test": f"{QWENVL_EVAL}/refcocog/refcocog_test.jsonl",
        },
        "sha256": None,
        "evidence": (
            "QwenLM/Qwen-VL eval_mm/EVALUATION.md. Directly downloadable, but in Qwen-VL's schema "
            "{image, sent, bbox, width, height}, not Shikra's: convert before use."
        ),
    },
    "rlaif_v": {
        "kind": "hub_dataset",
        "source": RLAIF_V_REPO,
        "files": [f"RLAIF-V-Dataset_{shard:03d}.parquet" for shard in range(14)],
        "sha256": None,
        "evidence": (
            "HF dataset card and commit history (shards _000.._013 at the repo root, 83,132 pairs "
            "per the RLAIF-V README); RLHF-V/RLAIF-V muffin/data/datasets.py reads the columns "
            "(DATA_FORMATS.md section 1). No commit is cited: the download records the resolved one."
        ),
    },
    **{
        f"lmms_lab_{dataset}": {
            "kind": "hub_dataset",
            "source": repo,
            "files": ["data/{split}-*.parquet"],
            "sha256": None,
            "evidence": (
                f"{repo} dataset card: question_id, image, question, answer (all expressions), "
                "segmentation, bbox (COCO xywh px), iscrowd, file_name; one row per object. "
                "RefCOCO val and RefCOCOg val hold 5,000 rows more than UNC/UMD (lmms-eval issue "
                "#1066): mllm.data.refcoco_parquet reports it (DATA_FORMATS.md section 3)."
            ),
        }
        for dataset, repo in LMMS_LAB_REPOS.items()
    },
}
