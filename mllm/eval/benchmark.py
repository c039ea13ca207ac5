"""The benchmark file: objhal_bench-style JSONL, one question ``{image, question, image_id,
org_idx?}`` per line (the exercise's format), and the fields every question needs.

Light on purpose (no torch): the CHAIR cache, the report and the downloads read it too.
"""

from __future__ import annotations

import os

from mllm.data.errors import DataError
from mllm.records import iter_jsonl

BENCHMARK_FIELDS = ("image", "question", "image_id")


def read_benchmark(path: str | os.PathLike) -> list[dict]:
    """objhal_bench-style JSONL; a malformed line, a missing field or one of the wrong type names
    the file and line (a null image would fail only in the decoding job, as a bare TypeError)."""
    rows = []
    for number, row in iter_jsonl(path):
        missing = [field for field in BENCHMARK_FIELDS if field not in row]
        if missing:
            raise DataError(f"{path}:{number}", f"missing field(s) {missing}")
        if not isinstance(row["image"], str) or not row["image"]:
            raise DataError(
                f"{path}:{number}",
                f"'image' must be a path or base64 string, got {row['image']!r:.40}",
            )
        if not isinstance(row["question"], str):
            raise DataError(f"{path}:{number}", "'question' must be a string")
        rows.append(row)
    if not rows:
        raise DataError(str(path), "the benchmark holds no questions")
    return rows
