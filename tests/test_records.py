"""mllm.records: the one JSON / JSON-lines reader; errors name the file and the line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mllm.data.errors import DataError
from mllm.records import JSONFileError, iter_jsonl, read_json, read_json_records, read_jsonl


def test_jsonl_skips_blank_lines_and_numbers_lines_from_one(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n  \n{"a": 2}\n')
    assert list(iter_jsonl(path)) == [(1, {"a": 1}), (4, {"a": 2})]
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    ("text", "reason", "problem"),
    [
        ('{"a": 1}\n{"a": \n', "syntax", "not valid JSON"),
        ('{"a": 1}\n[1]\n', "type", "JSON object"),
    ],
)
def test_bad_jsonl_line_names_file_and_line(tmp_path, text, reason, problem):
    path = tmp_path / "rows.jsonl"
    path.write_text(text)
    with pytest.raises(DataError, match=problem) as error:
        read_jsonl(path)
    assert isinstance(error.value, JSONFileError)
    assert (error.value.source, error.value.line, error.value.reason) == (f"{path}:2", 2, reason)


def test_json_document_and_record_list(tmp_path):
    path = tmp_path / "doc.json"
    path.write_text('{\n  "a": [1, 2]\n}\n')
    assert read_json(path) == {"a": [1, 2]}
    with pytest.raises(DataError, match="expected a JSON list of records, found dict"):
        read_json_records(path)
    path.write_text('[\n  {"id": 0},\n  {"id": \n')
    with pytest.raises(DataError, match=rf"^{path}:4: not valid JSON"):
        read_json_records(path)
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(JSONFileError, match="not UTF-8") as error:
        read_json(path)
    assert error.value.line is None and error.value.reason == "encoding"


def test_importing_records_imports_no_torch():
    code = "import sys, mllm.records; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
