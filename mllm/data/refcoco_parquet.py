"""lmms-lab's RefCOCO / RefCOCO+ / RefCOCOg parquet releases as Shikra-style REC files, so the
grounding rules read them like Shikra's ``REC_*.jsonl`` (``mllm.data.grounding``).

A row is one *object*: ``{question_id, image: {bytes, path}, question, answer: [expressions],
segmentation, bbox: [x, y, w, h] px (COCO), iscrowd, file_name}``. Each expression becomes one
line ``{img_path: file_name, expression, bbox: [x, y, x+w, y+h], width, height, question_id}``;
each image is written once, its bytes untouched, under the image folder.

lmms-lab's RefCOCO val and RefCOCOg val hold 5,000 rows more than the UNC / UMD splits they are
named after (lmms-eval issue #1066, unexplained). Nothing tells the extra rows apart, so they are
kept, and the summary says so (``matches_standard_split: false``, ``extra_rows``) and the log
warns: the report shows it beside the split instead of scoring a different val set silently.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from mllm.atomic import atomic_directory, write_json, write_jsonl
from mllm.data.errors import BadRecord, BadRecordPolicy, DataError, SkipTally
from mllm.data.parquet_rows import image_bytes, image_size, iter_parquet_rows

log = logging.getLogger(__name__)

# dataset (the grounding config's name) -> lmms-lab's Hub dataset repo
LMMS_LAB_REPOS = {
    "refcoco": "lmms-lab/RefCOCO",
    "refcoco+": "lmms-lab/RefCOCOplus",
    "refcocog": "lmms-lab/RefCOCOg",
}
# Objects per split of the UNC (RefCOCO, RefCOCO+) and UMD (RefCOCOg) partitions: jxu124's
# releases (refcoco validation 3,811, test = testA 1,975, testB 1,810, ...; DATA_FORMATS §3).
STANDARD_OBJECTS = {
    ("refcoco", "val"): 3811,
    ("refcoco", "testA"): 1975,
    ("refcoco", "testB"): 1810,
    ("refcoco+", "val"): 3805,
    ("refcoco+", "testA"): 1975,
    ("refcoco+", "testB"): 1798,
    ("refcocog", "val"): 2573,
    ("refcocog", "test"): 5023,
}
REQUIRED_COLUMNS = ("image", "answer", "bbox", "file_name")


def split_pattern(split: str) -> str:
    """lmms-lab's files of one split: ``data/val-00000-of-00004.parquet`` …"""
    return f"data/{split}-*.parquet"


def split_files(folder: str | os.PathLike, split: str) -> list[Path]:
    """The parquet files of ``split`` in a fetched copy of a release, in shard order."""
    files = sorted(Path(folder).glob(split_pattern(split)))
    if not files:
        raise DataError(
            str(folder), f"no parquet files for split {split!r} ({split_pattern(split)})"
        )
    return files


def convert_lmms_refcoco(
    parquet_paths: Sequence[str | os.PathLike],
    *,
    dataset: str,
    split: str,
    output_path: str | os.PathLike,
    image_dir: str | os.PathLike,
    summary_path: str | os.PathLike,
    on_bad_record: BadRecordPolicy = "raise",
) -> dict:
    """Write the REC lines of one split to ``output_path``, its images to ``image_dir`` and the
    summary (rows, expressions, skips per reason, the standard split's size) to
    ``summary_path``. A bad row (undecodable image, no expression, a malformed box) raises a
    ``DataError`` naming shard, row and field, or is counted per reason with ``"skip"``."""
    tally = SkipTally(on_bad_record)
    lines: list[dict] = []
    rows = kept_rows = 0
    with atomic_directory(image_dir) as images:
        sizes: dict[str, tuple[int, int]] = {}
        for where, row in iter_parquet_rows(list(parquet_paths), REQUIRED_COLUMNS):
            rows += 1
            try:
                lines += _rec_lines(row, where, images, sizes)
                kept_rows += 1
            except BadRecord as error:
                tally.reject(error)
        if not lines:
            raise DataError(f"{dataset} {split}", "no usable rows")
        write_jsonl(output_path, lines)
    standard = STANDARD_OBJECTS.get((dataset, split))
    summary = {
        "dataset": dataset,
        "split": split,
        "rows": rows,
        "objects": kept_rows,
        "expressions": len(lines),
        "images": len(sizes),
        "skipped": tally.skipped,
        "standard_rows": standard,
        "matches_standard_split": standard is not None and rows == standard,
        "extra_rows": None if standard is None else rows - standard,
    }
    if standard is not None and rows != standard:
        summary["note"] = (
            f"{dataset} {split}: {rows} rows, the standard split has {standard} objects "
            f"({rows - standard:+d}); scored as published, not the standard {split} set"
        )
        log.warning("%s", summary["note"])
    if tally.skipped:
        log.warning("%s %s: skipped %s; first: %s", dataset, split, tally.skipped, tally.first)
    write_json(summary_path, summary)
    return summary


def _rec_lines(row: dict, where: str, images: Path, sizes: dict) -> list[dict]:
    """The REC lines of one object row; writes its image on first sight."""
    file_name = row.get("file_name")
    if not isinstance(file_name, str) or not file_name.strip():
        raise BadRecord(where, "missing_field", "field 'file_name' is empty")
    name = PurePosixPath(file_name)
    if name.is_absolute() or ".." in name.parts:
        raise BadRecord(where, "missing_field", f"field 'file_name' is unsafe: {file_name!r}")
    expressions = [
        text for text in (row.get("answer") or []) if isinstance(text, str) and text.strip()
    ]
    if not expressions:
        raise BadRecord(
            where, "no_expression", f"field 'answer' has no expression: {row.get('answer')!r}"
        )
    bbox = row.get("bbox")
    if (
        not isinstance(bbox, list | tuple)
        or len(bbox) != 4
        or not all(isinstance(v, int | float) and math.isfinite(v) for v in bbox)
    ):
        raise BadRecord(
            where, "bad_bbox", f"field 'bbox' must be 4 numbers [x, y, w, h], got {bbox!r}"
        )
    if file_name not in sizes:
        data = image_bytes(row.get("image"), where)
        target = images / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        sizes[file_name] = image_size(data)
    width, height = sizes[file_name]
    x, y, w, h = (float(v) for v in bbox)
    return [
        {
            "img_path": file_name,
            "expression": expression,
            "bbox": [x, y, x + w, y + h],
            "width": width,
            "height": height,
            "question_id": row.get("question_id"),
        }
        for expression in expressions
    ]
