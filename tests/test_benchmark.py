"""The benchmark file: every question's fields checked up front, errors naming file and line."""

from __future__ import annotations

import json

import pytest

from mllm.data.errors import DataError
from mllm.eval.benchmark import read_benchmark

GOOD = {"image": "1.png", "question": "Describe the image.", "image_id": 1}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (json.dumps({**GOOD, "image": None}), r"bench\.jsonl:2: 'image' must be"),
        (json.dumps({**GOOD, "image": ""}), r"bench\.jsonl:2: 'image' must be"),
        (json.dumps({**GOOD, "question": 3}), r"bench\.jsonl:2: 'question' must be a string"),
        (json.dumps("a question"), r"bench\.jsonl:2: expected a JSON object"),
        (json.dumps({"image": "1.png"}), r"bench\.jsonl:2: missing field\(s\) \['question'"),
    ],
    ids=["null-image", "empty-image", "question-not-a-string", "string-line", "missing-fields"],
)
def test_a_bad_question_names_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + line + "\n")
    with pytest.raises(DataError, match=message):
        read_benchmark(path)


def test_good_questions_are_read_in_order(tmp_path):
    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps({**GOOD, "image_id": 2}) + "\n")
    assert [row["image_id"] for row in read_benchmark(path)] == [1, 2]
