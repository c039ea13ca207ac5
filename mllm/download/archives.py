"""Zip archives: one member by name (whatever the top folder), or all of them unpacked, refusing
members that would land outside the target."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path, PurePosixPath

from mllm.download.errors import FetchError
from mllm.download.fetch import CHUNK_BYTES, pump


def extract_member(archive: Path, member: str, target: Path, source: str) -> tuple[str, int]:
    """Copy one member of the zip ``archive`` into ``target``; return its (sha256, size)."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            info = _find_member(bundle, member, source)
            with bundle.open(info) as reader:
                return pump(reader, target, info.file_size, PurePosixPath(member).name)
    except zipfile.BadZipFile as error:
        raise FetchError(f"{source}: not a readable zip archive ({error})") from error


def _find_member(bundle: zipfile.ZipFile, member: str, source: str) -> zipfile.ZipInfo:
    """``member`` by full name, else the one entry with its file name: archives of the same data
    differ in their top folder (Shikra's layout is undocumented)."""
    names = bundle.namelist()
    if member in names:
        return bundle.getinfo(member)
    wanted = PurePosixPath(member).name
    same_name = [name for name in names if PurePosixPath(name).name == wanted]
    if len(same_name) == 1:
        return bundle.getinfo(same_name[0])
    raise FetchError(
        f"{source}: no single member {member!r} in the archive "
        f"({len(same_name)} with that file name; it holds e.g. {names[:5]})"
    )


def unpack_images(bundle: zipfile.ZipFile, target: Path, source: str) -> int:
    members = [info for info in bundle.infolist() if not info.is_dir()]
    if not members:
        raise FetchError(f"{source}: the archive holds no files")
    for info in members:
        name = PurePosixPath(info.filename)
        if name.is_absolute() or ".." in name.parts:
            raise FetchError(f"{source}: unsafe member path {info.filename!r}")
    tops = {PurePosixPath(info.filename).parts[0] for info in members}
    strip = 1 if len(tops) == 1 and all("/" in info.filename for info in members) else 0
    _refuse_clashes(members, strip, source)
    for info in members:
        path = target.joinpath(*PurePosixPath(info.filename).parts[strip:])
        path.parent.mkdir(parents=True, exist_ok=True)
        with bundle.open(info) as reader, open(path, "wb") as writer:
            shutil.copyfileobj(reader, writer, CHUNK_BYTES)
    return len(members)


def _refuse_clashes(members: list[zipfile.ZipInfo], strip: int, source: str) -> None:
    """Refuse, before writing anything, an archive that holds a file where another member needs a
    folder (``a`` and ``a/b``), or one path twice: unpacked, one would silently lose or fail."""
    files: dict[tuple[str, ...], str] = {}
    for info in members:
        parts = PurePosixPath(info.filename).parts[strip:]
        if parts in files:
            raise FetchError(
                f"{source}: members {files[parts]!r} and {info.filename!r} unpack to the same file"
            )
        files[parts] = info.filename
    for parts, name in files.items():
        for depth in range(1, len(parts)):
            if parts[:depth] in files:
                raise FetchError(
                    f"{source}: member {files[parts[:depth]]!r} is a file, but member {name!r} "
                    "needs a folder of that name"
                )
