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


def fetch_record(source: str, digest: str | None, size: int | None, **details) -> dict:
    """``{source, sha256, bytes, **details}``: what was fetched, its digest and its size."""
    return {"source": source, "sha256": digest, "bytes": size, **details}


def file_records(files: Mapping[str, tuple[str, int]]) -> dict[str, dict]:
    """name -> ``{sha256, bytes}`` of each file of a set."""
    return {name: {"sha256": digest, "bytes": size} for name, (digest, size) in files.items()}
