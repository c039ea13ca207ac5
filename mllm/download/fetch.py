"""Bytes from a source: an ``http(s)://`` URL (retried on transient failures, checked against the
announced length), a ``file://`` URL or a local path, streamed into a file and hashed on the way.

A response cut short is caught when the server announced a length (``Content-Length``) or sent
the body chunked (a cut chunked body lacks its final chunk); with neither, and no pinned sha256,
nothing can tell a dropped connection from the end of the file: the fetch says so in the log
and its provenance records ``size_verified: false``.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO, NamedTuple
from urllib.parse import urlparse

from tqdm.auto import tqdm

from mllm.download.errors import FetchError
from mllm.download.provenance import check_sha256
from mllm.records import SYNTAX, TYPE, JSONFileError, read_json

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
HTTP_TIMEOUT_SECONDS = 60
RETRY_DELAYS_SECONDS = (2.0, 10.0, 30.0)  # waits before the 2nd, 3rd and 4th attempt
TRANSIENT_HTTP_CODES = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "mllm-workflow (python urllib)"


class _TransientError(Exception):
    """A failure worth another attempt: a dropped connection, an overloaded server."""


class Fetched(NamedTuple):
    """What a fetch wrote: its digest, its size, and whether that size is known to be whole (a
    local file, an announced length or chunked body, or a pinned sha256 that matched)."""

    sha256: str
    size: int
    size_verified: bool


def fetch_bytes(source: str | os.PathLike, target: Path, *, sha256: str | None = None) -> Fetched:
    """Stream ``source`` into ``target``, checked against ``sha256``."""
    path = local_path(source)
    if path is None:
        digest, size, verified = _download(os.fspath(source), target)
    elif path.is_file():
        with open(path, "rb") as reader:
            digest, size = pump(reader, target, path.stat().st_size, path.name)
        verified = True
    else:
        raise FetchError(f"{source}: no such file")
    check_sha256(source, sha256, digest)
    if not verified and sha256 is None:
        log.warning(
            "%s: UNVERIFIED SIZE: the server announced no length (no Content-Length, not chunked) "
            "and no sha256 is pinned, so a connection cut short would look like the end of the "
            "file. Got %d bytes with sha256 %s: check them and pin that digest in the config.",
            source,
            size,
            digest,
        )
    return Fetched(digest, size, verified or sha256 is not None)


def local_path(source: str | os.PathLike) -> Path | None:
    """The path a source names on this machine, or None for an http(s) URL."""
    text = os.fspath(source)
    parsed = urlparse(text)
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if "://" in text:
        raise FetchError(
            f"{text}: unsupported scheme {parsed.scheme!r} (use http(s)://, file:// or a path)"
        )
    return Path(text).expanduser()


def pump(reader: BinaryIO, target: Path, total: int | None, label: str) -> tuple[str, int]:
    """Copy ``reader`` into ``target``, hashing on the way, behind a progress bar."""
    digest = hashlib.sha256()
    size = 0
    progress = tqdm(
        total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, mininterval=5
    )
    with open(target, "wb") as writer, progress:
        while chunk := reader.read(CHUNK_BYTES):
            writer.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            progress.update(len(chunk))
    return digest.hexdigest(), size


def _download(url: str, target: Path) -> tuple[str, int, bool]:
    """GET ``url`` into ``target``, retrying transient failures with growing waits."""
    for delay in RETRY_DELAYS_SECONDS:
        try:
            return _download_once(url, target)
        except _TransientError as error:
            log.warning("%s: %s; retrying in %.0f s", url, error, delay)
            time.sleep(delay)
    try:
        return _download_once(url, target)
    except _TransientError as error:
        attempts = len(RETRY_DELAYS_SECONDS) + 1
        raise FetchError(f"{url}: still failing after {attempts} attempts: {error}") from error


def _download_once(url: str, target: Path) -> tuple[str, int, bool]:
    """One GET: (sha256, size, whether the size was checked against the server's framing). A
    permanent HTTP error (404, 403, ...) raises FetchError, not worth a retry."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            if response.headers.get_content_type() == "text/html":
                raise FetchError(
                    f"{url}: the server sent an HTML page, not the file (a Google Drive or GitHub "
                    "page?); download it by hand and give its local path"
                )
            expected = _content_length(response)
            # http.client raises IncompleteRead (below) for a chunked body without its last chunk
            framed = expected is not None or getattr(response, "chunked", False)
            digest, size = pump(response, target, expected, PurePosixPath(urlparse(url).path).name)
    except urllib.error.HTTPError as error:
        if error.code in TRANSIENT_HTTP_CODES:
            raise _TransientError(f"HTTP {error.code} {error.reason}") from error
        raise FetchError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (
        urllib.error.URLError,
        http.client.HTTPException,
        ConnectionError,
        TimeoutError,
    ) as error:
        raise _TransientError(str(error) or type(error).__name__) from error
    # http.client returns a short body without complaint when the server hangs up early.
    if expected is not None and size != expected:
        raise _TransientError(f"connection closed after {size} of {expected} bytes")
    return digest, size, framed


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isdigit() else None


@contextmanager
def scratch_dir(beside: Path) -> Iterator[Path]:
    """A work folder next to ``beside``: same file system, so results rename into place."""
    beside.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=beside.parent, prefix=f".{beside.name}.") as work:
        yield Path(work)


def read_fetched_json(path: Path, label: str) -> object:
    """A fetched JSON file (a COCO annotation file, a config.json); not JSON -> FetchError."""
    try:
        return read_json(path)
    except JSONFileError as error:
        at = f" at line {error.line}" if error.line else ""
        raise FetchError(f"{label}: not valid JSON{at} ({error.detail})") from error


def jsonl_problem(error: JSONFileError, source: str) -> str:
    """A JSON-lines reading error, worded for a FetchError: ``source:line: what``."""
    if error.reason == SYNTAX:
        return f"{source}:{error.line}: malformed JSON ({error.detail})"
    if error.reason == TYPE:
        return f"{source}:{error.line}: expected a JSON object"
    return f"{source}: not UTF-8 text ({error.detail})"
