"""Rows of published parquet files (HF ``datasets`` layout), located by shard and row, with
images stored as ``struct<bytes, path>`` (HF ``Image``) or plain binary."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from io import BytesIO
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from mllm.data.errors import BadRecord, DataError

BATCH_ROWS = 256  # rows decoded at a time: a 1 GB shard of JPEGs never sits in memory whole


def iter_parquet_rows(
    paths: Sequence[str | os.PathLike], required: Sequence[str]
) -> Iterator[tuple[str, dict]]:
    """(``"<shard> row <n>"``, row as a dict) for each row of each file, in order. A file that
    is not parquet or lacks a ``required`` column raises ``DataError`` naming it."""
    for path in paths:
        name = Path(path).name
        try:
            handle = pq.ParquetFile(path)
        except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
            raise DataError(name, f"not a readable parquet file ({error})") from error
        missing = [column for column in required if column not in handle.schema_arrow.names]
        if missing:
            raise DataError(
                name, f"missing column(s) {missing}; it has {handle.schema_arrow.names}"
            )
        row = 0
        for batch in handle.iter_batches(batch_size=BATCH_ROWS):
            for values in batch.to_pylist():
                yield f"{name} row {row}", values
                row += 1


def image_bytes(value, where: str, field: str = "image") -> bytes:
    """The encoded bytes of an HF ``Image`` cell (``{bytes, path}``) or a binary cell, checked
    to decode (any mode: RGBA, L, P … decode; the bytes are returned untouched)."""
    data = value.get("bytes") if isinstance(value, dict) else value
    if not isinstance(data, bytes) or not data:
        raise BadRecord(where, "undecodable_image", f"field {field!r} holds no image bytes")
    try:
        with Image.open(BytesIO(data)) as image:
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise BadRecord(where, "undecodable_image", f"field {field!r}: {error}") from error
    return data


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of encoded image bytes (read from the header)."""
    with Image.open(BytesIO(data)) as image:
        return image.size
