"""Byte-deterministic file writing and the COCO annotation layout."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from mllm.demo.categories import COCO_CATEGORY_IDS, SUPERCATEGORIES
from mllm.demo.scene import Scene


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG encoding; PIL writes no timestamps, so equal pixels give equal bytes. Level 0: noisy
    pixels barely compress (12 KB vs 9 KB at 64 px) and deflate would double the encoding time."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def json_bytes(data) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


def jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def write_file(root: Path, relpath: str, data: bytes) -> dict:
    """Write one file and return its manifest entry (hashed from memory: no second read)."""
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"path": relpath, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _coco_header(scenes: list[Scene], size: int) -> dict:
    return {
        "info": {"description": "mllm-workflow synthetic demo world", "version": "1.0"},
        "licenses": [],
        "images": [
            {"id": s.image_id, "file_name": s.file_name, "width": size, "height": size}
            for s in scenes
        ],
    }


def coco_instances(
    scenes: list[Scene], categories: tuple[str, ...], size: int, first_id: int
) -> dict:
    """COCO instances: bbox [x, y, w, h], visible-pixel area, box polygon as segmentation.

    An image's annotations are listed in drawing order: a later object lies on top of an earlier
    one (the vision warm-up relies on this to label overlapping patches).
    """
    annotations = []
    for scene in scenes:
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.box
            annotations.append(
                {
                    "id": first_id + len(annotations),
                    "image_id": scene.image_id,
                    "category_id": COCO_CATEGORY_IDS[obj.category],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": obj.area,
                    "iscrowd": 0,
                    "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
                }
            )
    cats = [
        {"id": COCO_CATEGORY_IDS[c], "name": c, "supercategory": SUPERCATEGORIES[c]}
        for c in categories
    ]
    return {
        **_coco_header(scenes, size),
        "annotations": annotations,
        "categories": sorted(cats, key=lambda c: c["id"]),
    }


def coco_captions(
    scenes: list[Scene], captions: dict[int, list[str]], size: int, first_id: int
) -> dict:
    annotations = [
        {"id": first_id + k, "image_id": image_id, "caption": text}
        for k, (image_id, text) in enumerate(
            (s.image_id, t) for s in scenes for t in captions[s.image_id]
        )
    ]
    return {**_coco_header(scenes, size), "annotations": annotations}
