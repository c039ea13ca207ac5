"""Integrity lines: which exact benchmark file each score was computed on — its row count and
sha256, and the dataset revision a download resolved — printed beside the score, so two reports
that disagree can first be checked to have scored the same questions."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mllm.hashing import file_sha256
from mllm.records import iter_jsonl, read_json

PathLike = str | os.PathLike
# Keys of a download's provenance JSON that name what it resolved (mllm.download)
REVISION_KEYS = ("revision", "commit")


@dataclass(frozen=True)
class BenchmarkFile:
    """One benchmark file as the report saw it."""

    path: str
    rows: int
    sha256: str
    source: str | None = None  # where a download took it from
    revision: str | None = None  # the dataset revision that download resolved


def count_rows(path: PathLike) -> int:
    """Records in a JSON-lines file (non-blank lines) or a JSON list; 1 for another document."""
    if Path(path).suffix == ".jsonl":
        return sum(1 for _ in iter_jsonl(path))
    document = read_json(path)
    return len(document) if isinstance(document, list) else 1


def read_benchmark_file(path: PathLike, provenance: PathLike | None = None) -> BenchmarkFile:
    """Rows and sha256 of ``path``; source and resolved revision from its download's provenance
    JSON where the world has one."""
    source = revision = None
    if provenance is not None:
        record = read_json(provenance)
        source = record.get("source")
        revision = next((str(record[k]) for k in REVISION_KEYS if record.get(k)), None)
    return BenchmarkFile(str(path), count_rows(path), file_sha256(path), source, revision)


def read_benchmark_files(
    files: Sequence[tuple[str, PathLike]], provenance: Mapping[str, PathLike] | None = None
) -> dict[str, BenchmarkFile]:
    """label -> what :func:`read_benchmark_file` reads, for (label, path) pairs; ``provenance``
    maps a world file's path to its download's provenance JSON."""
    provenance = provenance or {}
    return {label: read_benchmark_file(path, provenance.get(str(path))) for label, path in files}


def integrity_lines(files: Mapping[str, BenchmarkFile], labels: Sequence[str]) -> str:
    """One line per benchmark file of ``labels`` (those the report has), as HTML."""
    lines = []
    for label in labels:
        if label not in files:
            continue
        found = files[label]
        parts = [f"{found.rows:,} rows", f"sha256 <code>{found.sha256[:16]}…</code>"]
        if found.source:
            parts.append(f"from <code>{html.escape(found.source)}</code>")
        if found.revision:
            parts.append(f"revision <code>{html.escape(found.revision)}</code>")
        lines.append(
            f'<li title="sha256 {found.sha256}">{html.escape(label)}: '
            f"<code>{html.escape(found.path)}</code>, {', '.join(parts)}</li>"
        )
    if not lines:
        return ""
    return f'<ul class="integrity meta">{"".join(lines)}</ul>'
