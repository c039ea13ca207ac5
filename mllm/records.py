"""The library's one reader of JSON and JSON-lines files.

* :func:`read_json` — one JSON document (a metrics file, COCO instances, a config.json);
* :func:`read_json_records` — a JSON list of records (the exercise's train.json, test.json);
* :func:`iter_jsonl` / :func:`read_jsonl` — JSON lines, one object per non-blank line, with its
  1-based line number (benchmarks, answers, REC files).

A file that is not what it should be raises :class:`JSONFileError`, a
:class:`~mllm.data.errors.DataError` whose source is ``file:line`` (or ``file`` when the whole
file is at fault), so a failure in a 100k-line file points at the line to fix. Callers that word
their errors themselves (CHAIR, the downloads) translate it using ``line``, ``reason`` and
``detail``. A missing file raises the ``OSError`` that ``open`` raises.

Only the standard library is imported: reading records never imports torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mllm.data.errors import DataError

PathLike = str | os.PathLike

SYNTAX, ENCODING, TYPE = "syntax", "encoding", "type"


class JSONFileError(DataError):
    """A JSON or JSON-lines file that does not parse, or holds the wrong kind of value.

    ``line`` is 1-based (None: the whole file); ``reason`` is ``"syntax"`` (``detail``: the
    decoder's message), ``"encoding"`` (not UTF-8; ``detail``: the decode error) or ``"type"``
    (``detail``: the type found).
    """

    def __init__(self, path: PathLike, line: int | None, reason: str, detail: str, problem: str):
        super().__init__(str(path) if line is None else f"{path}:{line}", problem)
        self.path, self.line, self.reason, self.detail = Path(path), line, reason, detail


def _syntax_error(path: PathLike, line: int, error: json.JSONDecodeError) -> JSONFileError:
    return JSONFileError(path, line, SYNTAX, error.msg, f"not valid JSON: {error.msg}")


def _encoding_error(path: PathLike, error: UnicodeDecodeError) -> JSONFileError:
    return JSONFileError(path, None, ENCODING, str(error), f"not UTF-8 text ({error})")


def read_json(path: PathLike) -> Any:
    """The JSON document in ``path`` (UTF-8, or the UTF-16/32 ``json`` detects); a syntax error
    names the line it is on."""
    try:
        return json.loads(Path(path).read_bytes())
    except json.JSONDecodeError as error:
        raise _syntax_error(path, error.lineno, error) from error
    except UnicodeDecodeError as error:
        raise _encoding_error(path, error) from error


def read_json_records(path: PathLike) -> list:
    """A JSON list of records (the exercise's train.json / test.json / preference_train.json)."""
    records = read_json(path)
    if not isinstance(records, list):
        found = type(records).__name__
        raise JSONFileError(
            path, None, TYPE, found, f"expected a JSON list of records, found {found}"
        )
    return records


def iter_jsonl(path: PathLike) -> Iterator[tuple[int, dict]]:
    """(1-based line number, object) for each non-blank line, read lazily: a validator can stop
    after the first record of a large file. A line that is not a JSON object raises."""
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise _syntax_error(path, number, error) from error
                if not isinstance(record, dict):
                    found = type(record).__name__
                    raise JSONFileError(path, number, TYPE, found, "expected a JSON object")
                yield number, record
    except UnicodeDecodeError as error:
        raise _encoding_error(path, error) from error


def read_jsonl(path: PathLike) -> list[dict]:
    """Every object of a JSON-lines file, blank lines skipped."""
    return [record for _, record in iter_jsonl(path)]
