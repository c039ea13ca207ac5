"""Referring-expression (REC) annotation files, e.g. Shikra's ``REC_*.jsonl``, from a zip or a
folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mllm.download.errors import FetchError
from mllm.download.files import fetch_file_set
from mllm.records import SYNTAX, TYPE, JSONFileError, iter_jsonl


def fetch_rec_files(
    source: str, dest_dir: Path, names: Sequence[str], *, sha256: str | None = None
) -> dict:
    """Write ``dest_dir/<name>`` for each REC JSONL in ``names`` from an annotation zip (URL or
    local; members matched by file name, since Shikra's zip layout is undocumented) or a folder.

    Each file's first record must parse as a JSON object, so a Drive HTML page or a truncated
    download fails here with its name; all files move into place together or none does.
    """
    return fetch_file_set(
        source,
        Path(dest_dir),
        {name: name for name in names},
        locate=lambda folder, name: folder / name,
        validate=lambda path, name: _validate_jsonl_head(path, f"{source}: {name}"),
        sha256=sha256,
    )


def _validate_jsonl_head(path: Path, label: str) -> None:
    try:
        first = next(iter_jsonl(path), None)
    except JSONFileError as error:
        if error.reason == SYNTAX:
            raise FetchError(f"{label}: the first line is not JSON ({error.detail})") from error
        if error.reason == TYPE:
            raise FetchError(f"{label}: the first line is not a JSON object") from error
        raise FetchError(f"{label}: not UTF-8 text ({error.detail})") from error
    if first is None:
        raise FetchError(f"{label}: empty file")
