"""Atomic writes: a reader (or Snakemake) sees either the old output or the complete new one,
never a half-written file or model directory, even when the job is killed mid-write."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def scratch_name_pattern(path: str | os.PathLike) -> re.Pattern:
    """The names of the temporary siblings of ``path`` that the writers here (and download work
    folders, mllm.download.fetch.scratch_dir) make: ``.<name>.<8 tempfile characters>[.tmp]``."""
    return re.compile(rf"\.{re.escape(Path(path).name)}\.[a-z0-9_]{{8}}(\.tmp)?")


def remove_stale_scratch(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary siblings of ``path`` that a killed writer left (a half-downloaded
    13 GB archive, a half-unpacked folder), logging each; return them. Call it only as the one
    writer of ``path`` (a Snakemake job owns its output), before writing it."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = scratch_name_pattern(path)
    stale = sorted(entry for entry in path.parent.iterdir() if pattern.fullmatch(entry.name))
    for entry in stale:
        log.warning("removing %s, left by an interrupted write of %s", entry, path)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return stale


def _permissions(base: int) -> int:
    """``base`` under the process umask: temp files are private (0600/0700); outputs must not be."""
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, scratch = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(descriptor)
    try:
        yield Path(scratch)
        os.chmod(scratch, _permissions(0o666))
        os.replace(scratch, path)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)


@contextmanager
def atomic_files(paths: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """Yield a temporary sibling per path; they replace ``paths`` together, only if the block
    succeeds: a job writing several outputs leaves all of them or none (a replacement failing
    midway removes those already made)."""
    targets = [Path(path) for path in paths]
    scratches = []
    try:
        for path in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, scratch = tempfile.mkstemp(
                prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
            )
            os.close(descriptor)
            scratches.append(Path(scratch))
        yield list(scratches)
        replaced = []
        try:
            for scratch, path in zip(scratches, targets, strict=True):
                os.chmod(scratch, _permissions(0o666))
                os.replace(scratch, path)
                replaced.append(path)
        except BaseException:
            for path in replaced:
                path.unlink(missing_ok=True)
            raise
    finally:
        for scratch in scratches:
            scratch.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path) as scratch:
        scratch.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, payload: Any, *, indent: int | None = 2) -> None:
    write_text(path, json.dumps(payload, indent=indent, ensure_ascii=False, allow_nan=False) + "\n")


def write_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty scratch directory beside ``path``; it becomes ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield scratch
        os.chmod(scratch, _permissions(0o777))
        if path.exists():
            shutil.rmtree(path)
        os.replace(scratch, path)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch)
