"""Content manifests of image folders: what makes a changed image rerun the jobs that read it.

Snakemake sees only the files a rule declares, and an image folder holds thousands. Each folder
the world files read images from gets one manifest (sorted relative path, size and sha256 of every
file), and every job that reads those images takes the manifest as an input. The manifest is
rewritten only when its content changes, so a touched but unchanged image reruns nothing, and a
replaced one makes the manifest newer than exactly the outputs of the jobs that read it.

Snakemake compares mtimes of declared inputs; a file rewritten in place changes no folder's
mtime. So ``refresh_manifest`` runs when the Snakefile is read (rules/common.smk) and brings an
existing manifest up to date before the DAG is built (:class:`ManifestInputs`, the rules'
``images=`` inputs); the ``index_images`` rule writes the first one, once the folder exists. Only files whose (size, mtime_ns) changed are hashed again: the
stat of each file is cached beside the manifest (``<manifest>.stat.json``), so a folder of
80,000 COCO images costs one ``stat`` per file on a rerun. Only the standard library is imported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mllm.atomic import write_json
from mllm.hashing import file_sha256

if TYPE_CHECKING:
    from mllm.workflow.world import WorldImages


def folder_manifest(folder: str | os.PathLike, stat_cache: dict | None = None) -> tuple[dict, dict]:
    """The manifest of ``folder`` and the new stat cache (relative path -> [size, mtime_ns,
    sha256]); files whose size and mtime match ``stat_cache`` are not read again."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such image folder")
    known = stat_cache or {}
    files = []
    cache = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(root).as_posix()
        stat = path.stat()
        cached = known.get(relative)
        if cached is not None and cached[:2] == [stat.st_size, stat.st_mtime_ns]:
            digest = cached[2]
        else:
            digest = file_sha256(path)
        cache[relative] = [stat.st_size, stat.st_mtime_ns, digest]
        files.append([relative, stat.st_size, digest])
    return {"folder": os.fspath(folder), "files": files}, cache


def write_manifest(folder: str | os.PathLike, manifest_path: str | os.PathLike) -> bool:
    """Bring the manifest of ``folder`` at ``manifest_path`` up to date; True if rewritten.

    An unchanged manifest is left alone (its mtime too): Snakemake then reruns nothing downstream.
    """
    manifest_path = Path(manifest_path)
    cache_path = stat_cache_path(manifest_path)
    manifest, cache = folder_manifest(folder, _read_or_none(cache_path))
    changed = _read_or_none(manifest_path) != manifest
    if changed:
        write_json(manifest_path, manifest, indent=None)
    if changed or _read_or_none(cache_path) != cache:
        write_json(cache_path, cache, indent=None)
    return changed


def refresh_manifest(folder: str | os.PathLike, manifest_path: str | os.PathLike) -> bool:
    """``write_manifest`` for a manifest already written, while the Snakefile is read; a folder or
    manifest not there yet is left to the ``index_images`` job. True if rewritten."""
    if not Path(folder).is_dir() or not Path(manifest_path).is_file():
        return False
    return write_manifest(folder, manifest_path)


class ManifestInputs:
    """The rules' ``images=`` inputs during one reading of the Snakefile: the manifests of the
    folders that world files read images from, each brought up to date the first time a rule asks
    for it. ``refresh=False`` (a job re-reading the Snakefile on a cluster node) leaves that to
    the head, which already did it."""

    def __init__(self, images: WorldImages, *, refresh: bool):
        self.images = images
        self.refresh = refresh
        self._refreshed: set[str] = set()

    def of(self, world_files: Sequence[str]) -> list[str]:
        """The manifests of the folders the images of ``world_files`` come from."""
        names = self.images.names_of(world_files)
        for name in names:
            if self.refresh and name not in self._refreshed:
                refresh_manifest(self.images.folders[name], self.images.manifest(name))
                self._refreshed.add(name)
        return [self.images.manifest(name) for name in names]


def stat_cache_path(manifest_path: str | os.PathLike) -> Path:
    manifest_path = Path(manifest_path)
    return manifest_path.with_name(f"{manifest_path.name}.stat.json")


def _read_or_none(path: Path) -> object:
    """A JSON file's content, or None when it is missing or unreadable (then it is rebuilt)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
