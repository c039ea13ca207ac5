"""Content hashes of files, read in 1 MiB blocks (model weights do not fit in memory).

One reader serves the resume fingerprint, the reference cache key and the world-file provenance.
Only the standard library is imported.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def update_with_file(digest, path: str | os.PathLike) -> None:
    """Feed the bytes of ``path`` to the hash ``digest``."""
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 hex digest of the file at ``path``."""
    digest = hashlib.sha256()
    update_with_file(digest, path)
    return digest.hexdigest()
