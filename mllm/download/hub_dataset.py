"""Parquet files of a Hub *dataset* repo (RLAIF-V's shards, lmms-lab's RefCOCO splits), pinned to
the commit a revision resolves to, or the same files from a local folder (a cluster node without
internet, a test fixture); each file's sha256 goes into the provenance."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path

from huggingface_hub import dataset_info, snapshot_download

from mllm.atomic import atomic_directory
from mllm.download.errors import FetchError
from mllm.download.fetch import local_path
from mllm.download.hub_tree import HUB_REPO_ID, link_tree
from mllm.hashing import file_sha256


def fetch_dataset_files(
    source: str, dest: Path, patterns: Sequence[str], *, revision: str | None = None
) -> dict:
    """Copy the files of ``source`` (a Hub dataset repo id or a local folder) that match
    ``patterns`` (the Hub's glob rules, e.g. ``RLAIF-V-Dataset_000.parquet``, ``data/val-*``)
    into ``dest``. Every pattern must match a file, so a shard or split that is not there fails
    here rather than as a smaller data set. Returns the provenance: the requested ``revision``,
    the ``commit`` it resolved to (None for a folder) and ``{name: {sha256, bytes}}``."""
    if not patterns:
        raise ValueError(f"{source}: no file patterns to fetch")
    dest = Path(dest)
    local = local_path(source)
    with atomic_directory(dest) as scratch:
        if local is not None and local.is_dir():
            if revision is not None:
                raise ValueError(f"{source}: a local folder has no revision to pin ({revision!r})")
            link_tree(local, scratch, list(patterns))
            commit = None
        elif HUB_REPO_ID.fullmatch(source):
            commit = dataset_info(source, revision=revision).sha
            snapshot_download(
                repo_id=source,
                repo_type="dataset",
                revision=commit,
                local_dir=scratch,
                allow_patterns=list(patterns),
            )
            # .cache/ holds the Hub's resume bookkeeping, not part of the data.
            shutil.rmtree(scratch / ".cache", ignore_errors=True)
        else:
            raise FetchError(f"{source}: neither a local folder nor a Hub dataset repo id")
        names = sorted(
            path.relative_to(scratch).as_posix() for path in scratch.rglob("*") if path.is_file()
        )
        unmatched = [p for p in patterns if not any(fnmatch(name, p) for name in names)]
        if unmatched:
            raise FetchError(f"{source}: no file matches {unmatched} (it holds e.g. {names[:5]})")
        files = {
            name: {"sha256": file_sha256(scratch / name), "bytes": (scratch / name).stat().st_size}
            for name in names
        }
    return {"source": source, "revision": revision, "commit": commit, "files": files}
