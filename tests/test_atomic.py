"""Atomic writes: all or nothing, and outputs readable like any file the user writes."""

from __future__ import annotations

import os
import stat

import pytest

from mllm.atomic import atomic_directory, atomic_files, write_json


def test_a_failed_write_leaves_the_old_file_and_no_scratch(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"a": 1})
    with pytest.raises(ValueError):
        write_json(target, {"a": float("nan")})  # NaN is not JSON: refused before the rename
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_failed_directory_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "model") as scratch:
        (scratch / "weights").write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_several_files_appear_together_or_not_at_all(tmp_path):
    paths = [tmp_path / "a.json", tmp_path / "sub" / "b.json"]
    with atomic_files(paths) as scratches:
        for scratch in scratches:
            scratch.write_text("{}")
        assert not any(path.exists() for path in paths)
    assert [path.read_text() for path in paths] == ["{}", "{}"]
    with pytest.raises(RuntimeError), atomic_files([tmp_path / "c", tmp_path / "d"]) as scratches:
        scratches[0].write_text("done")
        raise RuntimeError("the second output failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "sub"]


def test_a_replacement_failing_midway_removes_the_files_already_replaced(tmp_path):
    blocker = tmp_path / "b"
    (blocker / "inside").mkdir(parents=True)  # a non-empty directory: no file can replace it
    with pytest.raises(OSError), atomic_files([tmp_path / "a", blocker]) as scratches:
        for scratch in scratches:
            scratch.write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_outputs_get_the_usual_permissions_not_the_private_temp_ones(tmp_path):
    umask = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {})
        with atomic_directory(tmp_path / "model") as scratch:
            (scratch / "config.json").write_text("{}")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755
