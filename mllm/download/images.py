"""An image folder (e.g. COCO train2014, the RefCOCO family's images) unpacked from a zip."""

from __future__ import annotations

import zipfile
from pathlib import Path

from mllm.atomic import atomic_directory, remove_stale_scratch
from mllm.download.archives import unpack_images
from mllm.download.errors import FetchError
from mllm.download.fetch import fetch_bytes, scratch_dir
from mllm.download.provenance import fetch_record


def fetch_image_folder(source: str, dest: Path, *, sha256: str | None = None) -> dict:
    """Unpack an image zip (URL or local, e.g. COCO's ``train2014.zip``) into the folder ``dest``.

    The archive's single top folder (``train2014/``) is stripped, so image paths in the REC files
    resolve against ``dest``. Members that would land outside ``dest`` are refused. The folder
    appears only once complete.
    """
    dest = Path(dest)
    remove_stale_scratch(dest)
    with atomic_directory(dest) as scratch, scratch_dir(dest) as work:
        archive = work / "archive.zip"
        fetched = fetch_bytes(source, archive, sha256=sha256)
        try:
            with zipfile.ZipFile(archive) as bundle:
                images = unpack_images(bundle, Path(scratch), source)
        except zipfile.BadZipFile as error:
            raise FetchError(f"{source}: not a readable zip archive ({error})") from error
    return fetch_record(source, fetched, images=images)
