"""Provenance of a fetch: the sha256 check, and the record every fetcher returns (the adapters
write it beside the fetched files, so the report says exactly which bytes were used).

Publishers list no SHA-256 digests (see ``mllm.download.sources``): pin the digest a first
download recorded, and later fetches are checked against it.
"""

from __future__ import annotations

from collections.abc import Mapping

from mllm.download.errors import FetchError


def check_sha256(source: str, expected: str | None, digest: str) -> None:
    """Fail unless the fetched bytes have the ``expected`` digest (None: nothing to check)."""
    if expected is not None and expected.strip().lower() != digest:
        raise FetchError(f"{source}: sha256 mismatch: expected {expected}, got {digest}")


def fetch_record(source: str, fetched: tuple | None, **details) -> dict:
    """``{source, sha256, bytes, size_verified, **details}``: what was fetched (``fetched``, a
    ``mllm.download.fetch.Fetched``; None for a folder of files), its digest and its size, and
    whether that size is known to be whole."""
    if fetched is None:
        return {"source": source, "sha256": None, "bytes": None, **details}
    digest, size, verified = fetched
    return {"source": source, "sha256": digest, "bytes": size, "size_verified": verified, **details}


def file_records(files: Mapping[str, tuple]) -> dict[str, dict]:
    """name -> ``{sha256, bytes}`` of each file of a set ((sha256, size, ...) tuples)."""
    return {name: {"sha256": file[0], "bytes": file[1]} for name, file in files.items()}
