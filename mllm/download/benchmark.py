"""The benchmark: an objhal_bench-style JSONL, every line checked before it is moved into place."""

from __future__ import annotations

from pathlib import Path

from mllm.atomic import atomic_file, remove_stale_scratch
from mllm.download.errors import FetchError
from mllm.download.fetch import fetch_bytes, jsonl_problem
from mllm.download.provenance import fetch_record
from mllm.eval.benchmark import BENCHMARK_FIELDS
from mllm.records import JSONFileError, iter_jsonl


def fetch_benchmark(source: str, dest: Path, *, sha256: str | None = None) -> dict:
    """Fetch an objhal_bench-style JSONL (``{image, question, image_id, org_idx?}`` per line) to
    ``dest`` after checking every line, so a bad line fails here with its number, before any GPU
    decoding starts."""
    dest = Path(dest)
    remove_stale_scratch(dest)
    with atomic_file(dest) as scratch:
        fetched = fetch_bytes(source, scratch, sha256=sha256)
        questions = _validate_benchmark(scratch, source)
    return fetch_record(source, fetched, member=None, questions=questions)


def _validate_benchmark(path: Path, source: str) -> int:
    """Check each non-blank line; return how many questions the file holds."""
    questions = 0
    try:
        for number, record in iter_jsonl(path):
            missing = [field for field in BENCHMARK_FIELDS if record.get(field) in (None, "")]
            if missing:
                raise FetchError(f"{source}:{number}: missing {', '.join(missing)}")
            questions += 1
    except JSONFileError as error:
        raise FetchError(jsonl_problem(error, source)) from error
    if not questions:
        raise FetchError(f"{source}: holds no questions")
    return questions
