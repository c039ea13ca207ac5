"""Small parquet files in the published layouts (images as HF ``Image``: struct<bytes, path>),
written by the tests themselves: RLAIF-V shards and lmms-lab RefCOCO-family splits."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def image_bytes(seed: int, mode: str = "RGB", size=(48, 40), fmt: str | None = None) -> bytes:
    """Noise (so the encoding is well over the base64 threshold) in ``mode``, encoded as JPEG for
    RGB/L and as PNG for modes JPEG cannot hold (RGBA, P)."""
    width, height = size
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = (
        Image.fromarray(pixels).convert(mode)
        if mode != "P"
        else Image.fromarray(pixels).convert("P", palette=Image.Palette.ADAPTIVE)
    )
    fmt = fmt or ("JPEG" if mode in ("RGB", "L") else "PNG")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def rlaif_v_row(k: int, **overrides) -> dict:
    row = {
        "ds_name": "RLAIF-V",
        "image": {"bytes": image_bytes(k), "path": f"{k}.jpg"},
        "question": f"What is in picture {k}?",
        "chosen": f"A cup on a table ({k}).",
        "rejected": f"A dog beside a cup ({k}).",
        "origin_dataset": "VQAv2",
        "origin_split": '{"model": "OmniLMM-12B", "feedback_model": "llava", "type": "qa"}',
        "idx": f"VQAv2_{k:06d}",
        "image_path": f"coco/train2014/{k}.jpg",
    }
    row.update(overrides)
    return row


RLAIF_V_SCHEMA = pa.schema(
    [
        ("ds_name", pa.string()),
        ("image", IMAGE_TYPE),
        ("question", pa.string()),
        ("chosen", pa.string()),
        ("rejected", pa.string()),
        ("origin_dataset", pa.string()),
        ("origin_split", pa.string()),
        ("idx", pa.string()),
        ("image_path", pa.string()),
    ]
)


def write_rlaif_v_shard(path: Path, rows: list[dict], schema: pa.Schema = RLAIF_V_SCHEMA) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def write_rlaif_v_release(folder: Path, shards: int = 2, rows_per_shard: int = 3) -> Path:
    """``RLAIF-V-Dataset_{k:03d}.parquet`` shards at the folder's root, as on the Hub."""
    for shard in range(shards):
        rows = [rlaif_v_row(shard * rows_per_shard + k) for k in range(rows_per_shard)]
        write_rlaif_v_shard(folder / f"RLAIF-V-Dataset_{shard:03d}.parquet", rows)
    return folder


REFCOCO_SCHEMA = pa.schema(
    [
        ("question_id", pa.string()),
        ("image", IMAGE_TYPE),
        ("question", pa.string()),
        ("answer", pa.list_(pa.string())),
        ("segmentation", pa.list_(pa.float32())),
        ("bbox", pa.list_(pa.float32())),
        ("iscrowd", pa.int8()),
        ("file_name", pa.string()),
    ]
)


def refcoco_row(k: int, *, mode: str = "RGB", size=(48, 40), **overrides) -> dict:
    width, height = size
    row = {
        "question_id": str(1000 + k),
        "image": {"bytes": image_bytes(k % 3, mode, size), "path": None},
        "question": "Please carefully observe the area circled in the image.",
        "answer": [f"the cup {k}", f"cup number {k}"],
        "segmentation": [2.0, 3.0, 20.0, 3.0, 20.0, 30.0],
        "bbox": [2.0, 3.0, 18.0, 27.0],
        "iscrowd": 0,
        "file_name": f"COCO_train2014_{k % 3:012d}.jpg",
    }
    row.update(overrides)
    return row


def write_refcoco_split(folder: Path, split: str, rows: list[dict], files: int = 1) -> list[Path]:
    """``data/{split}-0000k-of-0000n.parquet``, the rows spread over ``files`` files."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(files):
        part = rows[index::files]
        path = folder / "data" / f"{split}-{index:05d}-of-{files:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(part, schema=REFCOCO_SCHEMA), path)
        paths.append(path)
    return paths
