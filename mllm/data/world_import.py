"""A real dataset file into the world's table (mllm.workflow.world).

Every world file's relative image references resolve against one folder, the world's image
root; a real file's resolve against a folder of its own (the SFT images, COCO train2014 …). The
import rewrites each relative reference so that it resolves from the image root, keeps base64
images and absolute paths as they are, and otherwise copies the records unchanged. Whether a
referenced image exists stays the readers' concern: their bad-record policy decides.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from mllm.atomic import atomic_file, write_json, write_jsonl
from mllm.data.errors import DataError
from mllm.data.images import BASE64_MIN_LENGTH
from mllm.data.rlaif_v import convert_rlaif_v
from mllm.hashing import file_sha256
from mllm.records import iter_jsonl, read_json_records

IMAGE_FIELDS = ("image", "image_path", "img_path")  # the exercise's, Shikra's and Qwen-VL's names
Kind = Literal["records", "jsonl", "copy", "rlaif_v"]


def import_world_file(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    kind: Kind,
    image_folder: str | os.PathLike | None,
    image_root: str | os.PathLike,
    options: Mapping | None = None,
) -> dict:
    """Write ``output`` from ``source``: a JSON list of records, JSON lines, a plain copy (COCO
    annotations: no image references), or a folder of RLAIF-V parquet shards converted to
    preference records (``options``: ``max_rows``, ``on_bad_record``; images stay base64).
    Returns the provenance (sha256 of the source, record counts)."""
    if kind == "rlaif_v":
        shards = sorted(Path(source).glob("*.parquet"))
        records, summary = convert_rlaif_v(shards, **dict(options or {}))
        write_json(output, records, indent=None)
        return {
            "source": str(source),
            "kind": kind,
            "shards": {shard.name: file_sha256(shard) for shard in shards},
            **summary,
        }
    provenance = {"source": str(source), "sha256": file_sha256(source), "kind": kind}
    if kind == "copy":
        with atomic_file(output) as scratch:
            shutil.copyfile(source, scratch)
        return provenance
    if kind == "records":
        rows = read_json_records(source)
        places = [f"{source}: record {index}" for index in range(len(rows))]
    elif kind == "jsonl":
        numbered = list(iter_jsonl(source))
        rows = [row for _, row in numbered]
        places = [f"{source}:{line}" for line, _ in numbered]
    else:
        raise ValueError(f"unknown kind {kind!r}; expected records, jsonl, copy or rlaif_v")
    rerooted = 0
    for row, where in zip(rows, places, strict=True):
        if not isinstance(row, dict):
            raise DataError(where, f"expected a JSON object, found {type(row).__name__}")
        rerooted += reroot_image_refs(row, where, image_folder, image_root)
    if kind == "records":
        write_json(output, rows, indent=None)
    else:
        write_jsonl(output, rows)
    return {**provenance, "records": len(rows), "rerooted_image_refs": rerooted}


def reroot_image_refs(
    row: dict, where: str, image_folder: str | os.PathLike | None, image_root: str | os.PathLike
) -> int:
    """Rewrite ``row``'s relative image paths (in place) to resolve from ``image_root``; returns
    how many it rewrote. A relative path without an ``image_folder`` is an error: nothing says
    where it points."""
    count = 0
    for field in IMAGE_FIELDS:
        if field not in row:
            continue
        ref = row[field]
        if not isinstance(ref, str) or not ref:
            raise DataError(where, f"field {field!r}: expected an image path or base64 string")
        if len(ref) > BASE64_MIN_LENGTH or Path(ref).is_absolute():
            continue
        if image_folder is None:
            raise DataError(
                where,
                f"field {field!r}: relative image path {ref!r}, but no image folder is "
                "configured for this file",
            )
        row[field] = os.path.relpath(Path(image_folder, ref), image_root)
        count += 1
    return count
