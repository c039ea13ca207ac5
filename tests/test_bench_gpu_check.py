"""bench/gpu_check.py: its smoke mode end to end, the error rows and the time budget."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
gpu_check = sys.modules.setdefault("gpu_check", importlib.util.module_from_spec(SPEC))
SPEC.loader.exec_module(gpu_check)  # registered first: its dataclasses look their module up

EXPECTED = {
    ("own", "fwd+bwd"),
    ("own", "generate b1"),
    ("own", "generate b2"),
    ("hf_qwen2", "fwd+bwd"),
    ("hf_qwen2", "generate b1"),
    ("hf_qwen2", "generate b2"),
    ("qwen2_5_vl", "LoRA SFT step"),
    ("qwen2_5_vl", "generate b1"),
    ("qwen2_5_vl", "generate b2"),
}


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of the results table's body rows."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| part | measurement |")
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


@pytest.mark.slow
def test_smoke_run_measures_every_part_with_positive_numbers(tmp_path):
    out = tmp_path / "GPU.md"
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "bench/gpu_check.py",
        "--smoke",
        "--peak-tflops",
        "1",
        "--out",
        str(out),
    ]
    result = subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = table_rows(out.read_text())
    assert {(row[0], row[1]) for row in rows} == EXPECTED
    for row in rows:
        tokens_per_s, seconds, mfu, peak_gb, error = row[3:]
        assert error == "", row
        assert min(float(tokens_per_s), float(seconds), float(mfu), float(peak_gb)) > 0, row
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["dtype"] == "float32" and report["attention"] == "sdpa"
    assert "--smoke" in report["command"]
    assert all(row["error"] is None and row["tokens_per_s"] > 0 for row in report["rows"])
    assert "own ÷ HF Qwen2, fwd+bwd:" in out.read_text()


def test_a_failing_measurement_or_part_is_recorded_and_the_rest_still_run(tmp_path, monkeypatch):
    def broken_part(run):
        raise RuntimeError("no kernel for this")

    def part_with_an_oom(run):
        def out_of_memory():
            raise torch.OutOfMemoryError("CUDA out of memory")

        gpu_check.measure(run, "hf_qwen2", "fwd+bwd", "1x1", out_of_memory, tokens=1, flops=1.0)
        gpu_check.measure(run, "hf_qwen2", "generate b1", "1x1", lambda: None, tokens=8, flops=1.0)

    monkeypatch.setitem(gpu_check.PART_FUNCTIONS, "own", broken_part)
    monkeypatch.setitem(gpu_check.PART_FUNCTIONS, "hf_qwen2", part_with_an_oom)
    out = tmp_path / "GPU.md"
    gpu_check.main(["--smoke", "--parts", "own,hf_qwen2", "--out", str(out)])
    rows = table_rows(out.read_text())
    assert [(row[0], row[1]) for row in rows] == [
        ("own", "(part)"),
        ("hf_qwen2", "fwd+bwd"),
        ("hf_qwen2", "generate b1"),
    ]
    assert rows[0][-1] == "RuntimeError: no kernel for this"
    assert rows[1][-1] == "OutOfMemoryError: CUDA out of memory" and rows[1][3] == ""
    assert rows[2][-1] == "" and float(rows[2][3]) > 0


def test_parts_past_the_budget_are_skipped_and_say_so(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setitem(gpu_check.PART_FUNCTIONS, "own", ran.append)
    out = tmp_path / "GPU.md"
    gpu_check.main(["--smoke", "--parts", "own", "--budget-s", "-1", "--out", str(out)])
    assert ran == []
    rows = table_rows(out.read_text())
    assert rows == [["own", "(part)", "", "", "", "", "", "skipped: budget -1.0s spent"]]


def test_unknown_parts_are_refused():
    with pytest.raises(SystemExit):
        gpu_check.main(["--smoke", "--parts", "own,bogus"])
