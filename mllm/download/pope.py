"""The published POPE files: AoiDragon/POPE's json lines (a URL base, e.g. raw GitHub at a commit,
or a local folder) or lmms-lab/POPE's parquet shards (a Hub dataset repo pinned to the commit its
revision resolves to, or a local folder). Each file's sha256 and the resolved revision go into
the provenance, which the report prints beside the POPE numbers."""

from __future__ import annotations

import fnmatch
from pathlib import Path

from mllm.atomic import atomic_directory
from mllm.data.pope import LMMS_LAB_SHARDS, OFFICIAL_FILES, PUBLISHED_FORMATS
from mllm.download.errors import FetchError
from mllm.download.fetch import fetch_bytes, local_path
from mllm.download.provenance import file_records


def fetch_pope(
    source: str,
    dest: Path,
    *,
    file_format: str,
    revision: str | None = None,
    sha256: dict[str, str] | None = None,
) -> dict:
    """Fetch the published POPE files into the folder ``dest`` (replaced only when complete).

    ``official``: ``source`` is a folder or URL holding ``coco_pope_{setting}.json``; its
    revision is the one given (e.g. the commit in a raw GitHub URL). ``lmms_lab``: ``source`` is
    a Hub dataset repo id (downloaded at the commit ``revision`` resolves to) or a local folder
    of shards. ``sha256`` pins file name -> digest for the files it names."""
    if file_format not in PUBLISHED_FORMATS:
        raise FetchError(f"POPE format {file_format!r} is not one of {PUBLISHED_FORMATS}")
    dest = Path(dest)
    local = local_path(source)
    with atomic_directory(dest) as scratch:
        scratch = Path(scratch)
        if file_format == "official":
            files = {}
            for name in OFFICIAL_FILES.values():
                where = str(local / name) if local is not None else f"{source.rstrip('/')}/{name}"
                files[name] = fetch_bytes(where, scratch / name, sha256=(sha256 or {}).get(name))
            commit = revision
        elif local is not None and local.is_dir():
            if revision is not None:
                raise FetchError(f"{source}: a local folder has no revision to pin ({revision!r})")
            files = _copy_shards(local, scratch, sha256 or {})
            commit = None
        else:
            commit, files = _hub_shards(source, revision, scratch, sha256 or {})
    return {
        "source": source,
        "format": file_format,
        "requested_revision": revision,
        "revision": commit,
        "files": file_records(files),
    }


def _copy_shards(folder: Path, scratch: Path, sha256: dict[str, str]) -> dict[str, tuple]:
    shards = sorted(folder.glob("*.parquet")) or sorted(folder.glob("data/test-*.parquet"))
    if not shards:
        raise FetchError(f"{folder}: no parquet shards")
    return {
        path.name: fetch_bytes(path, scratch / path.name, sha256=sha256.get(path.name))
        for path in shards
    }


def _hub_shards(
    repo_id: str, revision: str | None, scratch: Path, sha256: dict[str, str]
) -> tuple[str, dict[str, tuple]]:
    """Download the shards of a Hub dataset repo at the commit ``revision`` resolves to now."""
    from huggingface_hub import dataset_info, hf_hub_download

    info = dataset_info(repo_id, revision=revision)
    names = sorted(
        s.rfilename for s in info.siblings or [] if fnmatch.fnmatch(s.rfilename, LMMS_LAB_SHARDS)
    )
    if not names:
        raise FetchError(f"{repo_id}@{info.sha}: no files match {LMMS_LAB_SHARDS}")
    files = {}
    for name in names:
        cached = hf_hub_download(repo_id, name, repo_type="dataset", revision=info.sha)
        base = Path(name).name
        files[base] = fetch_bytes(cached, scratch / base, sha256=sha256.get(base))
    return info.sha, files
