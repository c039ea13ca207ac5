"""One file, or one member of a zip, fetched into place; or a set of files from one zip or folder,
checked and moved into place together."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mllm.atomic import atomic_file, remove_stale_scratch
from mllm.download.archives import extract_member
from mllm.download.fetch import fetch_bytes, local_path, scratch_dir
from mllm.download.provenance import fetch_record, file_records


def fetch_file(
    source: str, dest: Path, *, sha256: str | None = None, member: str | None = None
) -> dict:
    """Fetch ``source``, or one ``member`` of the zip archive it names, to ``dest``.

    ``sha256`` checks the fetched source itself (the archive when ``member`` is given, since that
    is what publishers list digests for); the returned ``sha256`` and ``bytes`` describe it too.
    """
    dest = Path(dest)
    remove_stale_scratch(dest)
    with atomic_file(dest) as scratch:
        if member is None:
            fetched = fetch_bytes(source, scratch, sha256=sha256)
        else:
            with scratch_dir(dest) as work:
                archive = work / "archive.zip"
                fetched = fetch_bytes(source, archive, sha256=sha256)
                extract_member(archive, member, scratch, source)
    return fetch_record(source, fetched, member=member)


def fetch_file_set(
    source: str,
    dest_dir: Path,
    members: dict[str, str],
    *,
    locate: Callable[[Path, str], Path],
    validate: Callable[[Path, str], None],
    sha256: str | None,
) -> dict:
    """Fetch several files from one zip (URL or local; ``members`` maps each file name to its
    member) or from a local folder (``locate(folder, name)`` finds each), check every one, then
    move them into ``dest_dir`` together, so a broken source leaves ``dest_dir`` as it was.
    ``sha256`` checks the zip; a folder has no single digest to check."""
    local = local_path(source)
    folder = local if local is not None and local.is_dir() else None
    if folder is not None and sha256 is not None:
        raise ValueError(f"{source}: sha256 checks a zip archive, not a folder")
    remove_stale_scratch(dest_dir)
    with scratch_dir(dest_dir) as work:
        if folder is None:
            archive = work / "archive.zip"
            fetched = fetch_bytes(source, archive, sha256=sha256)
            files = {
                name: extract_member(archive, member, work / name, source)
                for name, member in members.items()
            }
        else:
            fetched = None
            files = {name: fetch_bytes(locate(folder, name), work / name) for name in members}
        for name in members:
            validate(work / name, name)
        dest_dir.mkdir(parents=True, exist_ok=True)
        for name in members:
            os.replace(work / name, dest_dir / name)
    return fetch_record(source, fetched, files=file_records(files))
