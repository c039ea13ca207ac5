"""COCO 2014 annotations (captions + instances): CHAIR's ground truth."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mllm.download.errors import FetchError
from mllm.download.fetch import read_fetched_json
from mllm.download.files import fetch_file_set

COCO_REQUIRED_KEYS = {
    "captions": ("images", "annotations"),
    "instances": ("images", "annotations", "categories"),
}


def fetch_coco_annotations(
    source: str,
    dest_dir: Path,
    *,
    splits: Sequence[str] = ("train2014", "val2014"),
    sha256: str | None = None,
) -> dict:
    """Write ``dest_dir/{captions,instances}_{split}.json`` from COCO's annotations zip (URL or
    local copy) or from a folder that already holds them (flat or under ``annotations/``).

    Every file is validated before any is moved into place, so a broken source leaves ``dest_dir``
    as it was. ``sha256`` checks the zip; a folder has no single digest to check.
    """
    names = {f"{kind}_{split}.json": kind for kind in COCO_REQUIRED_KEYS for split in splits}
    return fetch_file_set(
        source,
        Path(dest_dir),
        {name: f"annotations/{name}" for name in names},
        locate=_coco_file_in,
        validate=lambda path, name: _validate_coco(
            path, COCO_REQUIRED_KEYS[names[name]], f"{source}: {name}"
        ),
        sha256=sha256,
    )


def _coco_file_in(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / "annotations" / name):
        if candidate.is_file():
            return candidate
    raise FetchError(f"{folder}: holds no {name} (looked in it and in annotations/)")


def _validate_coco(path: Path, required: Sequence[str], label: str) -> None:
    """Fail here on a truncated or wrong file, not deep inside the CHAIR ground-truth build."""
    data = read_fetched_json(path, label)
    if not isinstance(data, dict):
        raise FetchError(f"{label}: not a COCO annotation file (the top level is not an object)")
    missing = [key for key in required if not isinstance(data.get(key), list)]
    if missing:
        raise FetchError(f"{label}: not a COCO annotation file (no {', '.join(missing)} list)")
