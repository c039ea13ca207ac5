"""Real preference and grounding data: RLAIF-V's parquet shards and lmms-lab's RefCOCO-family
releases, read from fixture files in the published layouts (written by tests/parquet_fixtures)."""

from __future__ import annotations

import base64
import io
import json
import logging
from types import SimpleNamespace

import pyarrow as pa
import pytest
from PIL import Image

from mllm.data import refcoco_parquet
from mllm.data.errors import DataError
from mllm.data.grounding import read_referents
from mllm.data.images import load_image
from mllm.data.refcoco_parquet import convert_lmms_refcoco, split_files
from mllm.data.rlaif_v import convert_rlaif_v, shard_patterns
from mllm.data.world_import import import_world_file
from mllm.download import hub_dataset
from mllm.download.errors import FetchError
from mllm.download.hub_dataset import fetch_dataset_files
from mllm.family.own import box_to_grid, grid_box_answer
from mllm.hashing import file_sha256
from mllm.workflow.world import WORLD_DIR, RealWorld, converted_rec, rec_file
from tests.parquet_fixtures import (
    RLAIF_V_SCHEMA,
    image_bytes,
    refcoco_row,
    rlaif_v_row,
    write_refcoco_split,
    write_rlaif_v_release,
    write_rlaif_v_shard,
)

# --- RLAIF-V: shards -> preference records -------------------------------------------------------


def test_rlaif_v_rows_become_preference_records_with_their_bytes_untouched(tmp_path):
    shard = write_rlaif_v_shard(
        tmp_path / "RLAIF-V-Dataset_000.parquet",
        [
            rlaif_v_row(0),
            rlaif_v_row(1, origin_split=""),
            rlaif_v_row(2, origin_split="not json {"),
        ],
    )
    records, summary = convert_rlaif_v([shard])
    assert summary == {"rows_read": 3, "records": 3, "skipped": {}}
    first = records[0]
    assert first["idx"] == "VQAv2_000000" and first["question"] == "What is in picture 0?"
    assert "<image>" not in first["question"]  # the preference loader prepends "<image>\n"
    assert base64.b64decode(first["image"]) == rlaif_v_row(0)["image"]["bytes"]
    assert first["metainfos"] == {
        "ds_name": "RLAIF-V",
        "origin_dataset": "VQAv2",
        "origin_split": {"model": "OmniLMM-12B", "feedback_model": "llava", "type": "qa"},
        "image_path": "coco/train2014/0.jpg",
        "shard": "RLAIF-V-Dataset_000.parquet",
        "row": 0,
    }
    assert records[1]["metainfos"]["origin_split"] == ""
    assert records[2]["metainfos"]["origin_split"] == "not json {"  # unverified format: kept


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "RGB"])
def test_rlaif_v_images_of_every_mode_decode_to_rgb_from_the_record(tmp_path, mode):
    row = rlaif_v_row(0, image={"bytes": image_bytes(0, mode), "path": None})
    (record,), _ = convert_rlaif_v([write_rlaif_v_shard(tmp_path / "s.parquet", [row])])
    assert base64.b64decode(record["image"]) == row["image"]["bytes"]
    with Image.open(io.BytesIO(row["image"]["bytes"])) as original:
        assert original.mode == mode
    image = load_image(record["image"], source="pair 0")
    assert image.mode == "RGB" and image.size == (48, 40)


def test_rlaif_v_integer_idx_becomes_a_string(tmp_path):
    schema = RLAIF_V_SCHEMA.set(
        RLAIF_V_SCHEMA.get_field_index("idx"), RLAIF_V_SCHEMA.field("idx").with_type(pa.int64())
    )
    shard = write_rlaif_v_shard(tmp_path / "s.parquet", [rlaif_v_row(0, idx=17)], schema)
    (record,), _ = convert_rlaif_v([shard])
    assert record["idx"] == "17"


BAD_ROWS = [
    ({"image": {"bytes": b"not an image", "path": None}}, "undecodable_image", "'image'"),
    ({"image": None}, "undecodable_image", "'image'"),
    ({"chosen": "  "}, "empty_response", "'chosen'"),
    ({"rejected": None}, "missing_field", "'rejected'"),
    (
        {"chosen": "A cup.", "rejected": " A cup. "},
        "identical_responses",
        "'chosen' and 'rejected'",
    ),
]


@pytest.mark.parametrize(("change", "reason", "field"), BAD_ROWS)
def test_rlaif_v_bad_row_raises_naming_shard_row_and_field(tmp_path, change, reason, field):
    shard = write_rlaif_v_shard(
        tmp_path / "RLAIF-V-Dataset_003.parquet", [rlaif_v_row(0), rlaif_v_row(1, **change)]
    )
    with pytest.raises(DataError, match="RLAIF-V-Dataset_003.parquet row 1") as error:
        convert_rlaif_v([shard])
    assert reason in str(error.value) and field in str(error.value)


def test_rlaif_v_skip_policy_counts_each_reason(tmp_path, caplog):
    rows = [rlaif_v_row(0)] + [
        rlaif_v_row(k + 1, **change) for k, (change, _, _) in enumerate(BAD_ROWS)
    ]
    shard = write_rlaif_v_shard(tmp_path / "s.parquet", rows)
    with caplog.at_level(logging.WARNING):
        records, summary = convert_rlaif_v([shard], on_bad_record="skip")
    assert len(records) == 1
    assert summary["skipped"] == {
        "undecodable_image": 2,
        "empty_response": 1,
        "missing_field": 1,
        "identical_responses": 1,
    }
    assert "skipped" in caplog.text


def test_rlaif_v_max_rows_reads_shards_in_order_and_stops(tmp_path):
    release = write_rlaif_v_release(tmp_path / "release", shards=2, rows_per_shard=3)
    shards = sorted(release.glob("*.parquet"), reverse=True)  # order given does not matter
    records, summary = convert_rlaif_v(shards, max_rows=4)
    assert [r["idx"] for r in records] == [f"VQAv2_{k:06d}" for k in range(4)]
    assert summary["rows_read"] == 4
    all_records, _ = convert_rlaif_v(shards)
    assert len(all_records) == 6


def test_rlaif_v_shard_without_a_column_or_not_parquet_is_named(tmp_path):
    row = {key: value for key, value in rlaif_v_row(0).items() if key != "chosen"}
    schema = RLAIF_V_SCHEMA.remove(RLAIF_V_SCHEMA.get_field_index("chosen"))
    shard = write_rlaif_v_shard(tmp_path / "RLAIF-V-Dataset_000.parquet", [row], schema)
    with pytest.raises(
        DataError, match=r"RLAIF-V-Dataset_000.parquet: missing column\(s\) \['chosen'\]"
    ):
        convert_rlaif_v([shard])
    broken = tmp_path / "RLAIF-V-Dataset_001.parquet"
    broken.write_bytes(b"PAR1 but not really")
    with pytest.raises(DataError, match="RLAIF-V-Dataset_001.parquet: not a readable parquet"):
        convert_rlaif_v([broken])


def test_rlaif_v_shard_selection_names_the_published_files():
    assert shard_patterns([2, 0]) == ["RLAIF-V-Dataset_000.parquet", "RLAIF-V-Dataset_002.parquet"]
    assert shard_patterns(None) == ["*.parquet"]
    with pytest.raises(ValueError, match="empty selection"):
        shard_patterns([])


def test_world_import_converts_a_shard_folder_into_the_world_preference_file(tmp_path):
    release = write_rlaif_v_release(tmp_path / "rlaif_v", shards=2, rows_per_shard=2)
    output = tmp_path / "world" / "preference_train.json"
    provenance = import_world_file(
        release,
        output,
        kind="rlaif_v",
        image_folder=None,
        image_root=tmp_path / "world",
        options={"max_rows": 3, "on_bad_record": "skip"},
    )
    records = json.loads(output.read_text())
    assert len(records) == 3 and provenance["records"] == 3
    assert provenance["shards"] == {
        path.name: file_sha256(path) for path in sorted(release.glob("*.parquet"))
    }


# --- fetching parquet files of a Hub dataset repo, or of a local copy --------------------------


def test_fetch_dataset_files_from_a_folder_selects_shards_and_records_digests(tmp_path):
    release = write_rlaif_v_release(tmp_path / "release", shards=3, rows_per_shard=1)
    dest = tmp_path / "resources" / "rlaif_v"
    provenance = fetch_dataset_files(str(release), dest, shard_patterns([0, 2]))
    names = ["RLAIF-V-Dataset_000.parquet", "RLAIF-V-Dataset_002.parquet"]
    assert sorted(path.name for path in dest.iterdir()) == names
    assert provenance["commit"] is None
    assert provenance["files"] == {
        name: {"sha256": file_sha256(release / name), "bytes": (release / name).stat().st_size}
        for name in names
    }


def test_fetch_dataset_files_fails_on_a_missing_shard_and_writes_nothing(tmp_path):
    release = write_rlaif_v_release(tmp_path / "release", shards=1, rows_per_shard=1)
    dest = tmp_path / "resources" / "rlaif_v"
    with pytest.raises(FetchError, match=r"no file matches \['RLAIF-V-Dataset_005.parquet'\]"):
        fetch_dataset_files(str(release), dest, shard_patterns([0, 5]))
    assert not dest.exists()
    with pytest.raises(ValueError, match="no revision to pin"):
        fetch_dataset_files(str(release), dest, ["*.parquet"], revision="main")
    with pytest.raises(FetchError, match="neither a local folder nor a Hub dataset"):
        fetch_dataset_files("http://example.invalid/x y", dest, ["*.parquet"])


def test_fetch_dataset_files_from_the_hub_pins_the_resolved_commit(tmp_path, monkeypatch):
    release = write_rlaif_v_release(tmp_path / "hub", shards=2, rows_per_shard=1)
    commit = "d763bdb" + "0" * 33
    calls = {}

    def fake_dataset_info(repo_id, *, revision=None):
        calls["dataset_info"] = (repo_id, revision)
        return SimpleNamespace(sha=commit)

    def fake_snapshot_download(*, repo_id, repo_type, revision, local_dir, allow_patterns):
        calls["snapshot_download"] = (repo_id, repo_type, revision, allow_patterns)
        for pattern in allow_patterns:
            for path in release.glob(pattern):
                (local_dir / path.name).write_bytes(path.read_bytes())
        (local_dir / ".cache" / "huggingface").mkdir(parents=True)
        return str(local_dir)

    monkeypatch.setattr(hub_dataset, "dataset_info", fake_dataset_info)
    monkeypatch.setattr(hub_dataset, "snapshot_download", fake_snapshot_download)
    dest = tmp_path / "rlaif_v"
    patterns = shard_patterns([1])
    provenance = fetch_dataset_files("openbmb/RLAIF-V-Dataset", dest, patterns, revision="main")
    assert calls == {
        "dataset_info": ("openbmb/RLAIF-V-Dataset", "main"),
        "snapshot_download": ("openbmb/RLAIF-V-Dataset", "dataset", commit, patterns),
    }
    assert provenance["revision"] == "main" and provenance["commit"] == commit
    assert list(provenance["files"]) == ["RLAIF-V-Dataset_001.parquet"]
    assert sorted(p.name for p in dest.iterdir()) == ["RLAIF-V-Dataset_001.parquet"]


# --- lmms-lab RefCOCO family -> Shikra-style REC files -------------------------------------------


def convert(tmp_path, rows, *, dataset="refcoco", split="testA", files=1, **options):
    release = tmp_path / "release"
    write_refcoco_split(release, split, rows, files=files)
    out = tmp_path / "out"
    summary = convert_lmms_refcoco(
        split_files(release, split),
        dataset=dataset,
        split=split,
        output_path=out / f"{split}.jsonl",
        image_dir=out / f"{split}.images",
        summary_path=out / f"{split}.summary.json",
        **options,
    )
    lines = [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]
    return summary, lines, out / f"{split}.images"


def test_lmms_lab_rows_explode_to_one_rec_line_per_expression_with_xyxy_boxes(tmp_path):
    rows = [refcoco_row(k) for k in range(4)]  # 3 images, image 0 shared by rows 0 and 3
    summary, lines, images = convert(tmp_path, rows, files=2)
    assert summary["rows"] == 4 and summary["expressions"] == 8 and summary["images"] == 3
    by_id = {(line["question_id"], line["expression"]): line for line in lines}
    line = by_id["1001", "cup number 1"]
    assert line == {
        "img_path": "COCO_train2014_000000000001.jpg",
        "expression": "cup number 1",
        "bbox": [2.0, 3.0, 20.0, 30.0],  # [x, y, x+w, y+h]
        "width": 48,
        "height": 40,
        "question_id": "1001",
    }
    written = images / "COCO_train2014_000000000000.jpg"
    assert written.read_bytes() == rows[0]["image"]["bytes"]  # bytes kept as they are
    referents = read_referents(images.parent / "testA.jsonl", image_folder=images)
    assert len(referents) == 8 and referents[0].width == 48


@pytest.mark.parametrize("mode", ["RGBA", "L", "P"])
def test_lmms_lab_odd_image_modes_convert_and_load(tmp_path, mode):
    _, lines, images = convert(tmp_path, [refcoco_row(0, mode=mode)])
    image = load_image(lines[0]["img_path"], images, source="line 1")
    assert image.mode == "RGB" and image.size == (48, 40)


def test_a_box_touching_the_right_and_bottom_edge_stays_on_the_grid(tmp_path):
    row = refcoco_row(0, size=(48, 40), bbox=[10.0, 5.0, 38.0, 35.0])  # x+w = 48, y+h = 40
    _, lines, images = convert(tmp_path, [row])
    referents = read_referents(images.parent / "testA.jsonl", image_folder=images)
    assert referents[0].bbox_xyxy_px == (10.0, 5.0, 48.0, 40.0)
    grid = box_to_grid(referents[0].bbox_xyxy_px, referents[0].width, referents[0].height)
    assert grid == (208, 125, 999, 999)  # int(1000 * 48/48) = 1000 is off Qwen-VL's 0..999
    answer = grid_box_answer(referents[0].expression, grid)  # the own family's answer text
    assert answer.endswith("<box>(208,125),(999,999)</box>")


LMMS_BAD_ROWS = [
    ({"image": {"bytes": b"\x89PNG broken", "path": None}}, "undecodable_image", "'image'"),
    ({"answer": []}, "no_expression", "'answer'"),
    ({"answer": None}, "no_expression", "'answer'"),
    ({"bbox": [1.0, 2.0, 3.0]}, "bad_bbox", "'bbox'"),
    ({"file_name": ""}, "missing_field", "'file_name'"),
]


@pytest.mark.parametrize(("change", "reason", "field"), LMMS_BAD_ROWS)
def test_lmms_lab_bad_row_raises_naming_shard_row_and_field(tmp_path, change, reason, field):
    rows = [refcoco_row(0), refcoco_row(1, **change)]
    with pytest.raises(DataError, match="testA-00000-of-00001.parquet row 1") as error:
        convert(tmp_path, rows)
    assert reason in str(error.value) and field in str(error.value)
    assert not (tmp_path / "out" / "testA.jsonl").exists()  # no partial output


def test_lmms_lab_skip_policy_counts_each_reason(tmp_path):
    rows = [refcoco_row(0)] + [refcoco_row(k + 1, **c) for k, (c, _, _) in enumerate(LMMS_BAD_ROWS)]
    summary, lines, _ = convert(tmp_path, rows, on_bad_record="skip")
    assert len(lines) == 2 and summary["objects"] == 1
    assert summary["skipped"] == {
        "undecodable_image": 1,
        "no_expression": 2,
        "bad_bbox": 1,
        "missing_field": 1,
    }


def test_a_val_split_larger_than_the_standard_one_is_reported(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(refcoco_parquet.STANDARD_OBJECTS, ("refcoco", "val"), 2)
    with caplog.at_level(logging.WARNING):
        summary, _, _ = convert(tmp_path, [refcoco_row(k) for k in range(3)], split="val")
    assert summary["matches_standard_split"] is False and summary["extra_rows"] == 1
    assert "refcoco val: 3 rows, the standard split has 2 objects (+1)" in summary["note"]
    assert summary["note"] in caplog.text
    written = json.loads((tmp_path / "out" / "val.summary.json").read_text())
    assert written == summary


def test_a_split_of_the_standard_size_matches_and_the_published_sizes_are_known():
    # lmms-lab's published val sizes are exactly 5,000 above the UNC / UMD object counts
    assert 8811 - refcoco_parquet.STANDARD_OBJECTS["refcoco", "val"] == 5000
    assert 7573 - refcoco_parquet.STANDARD_OBJECTS["refcocog", "val"] == 5000
    assert refcoco_parquet.STANDARD_OBJECTS["refcoco+", "val"] == 3805  # lmms-lab's matches


def test_a_split_matching_the_standard_size_has_no_note(tmp_path, monkeypatch):
    monkeypatch.setitem(refcoco_parquet.STANDARD_OBJECTS, ("refcoco", "testA"), 2)
    summary, _, _ = convert(tmp_path, [refcoco_row(0), refcoco_row(1)])
    assert summary["matches_standard_split"] is True and "note" not in summary


def test_split_files_names_a_missing_split(tmp_path):
    write_refcoco_split(tmp_path, "val", [refcoco_row(0)])
    with pytest.raises(DataError, match="no parquet files for split 'testB'"):
        split_files(tmp_path, "testB")


# --- the real world's table --------------------------------------------------------------------

SPLITS = {
    "refcoco": {"val": "REC_refcoco_unc_val.jsonl", "testA": "REC_refcoco_unc_testA.jsonl"},
    "refcocog": {"val": "REC_refcocog_umd_val.jsonl"},
}


def test_the_real_world_takes_eval_splits_from_lmms_lab_and_training_from_shikra():
    files = sorted({"REC_ref3_train.jsonl", *(n for s in SPLITS.values() for n in s.values())})
    world = RealWorld(
        {"rec_parquet": {"refcoco": {"source": "lmms-lab/RefCOCO"}}},
        files,
        train_annotations=False,
        rec_splits=SPLITS,
    )
    testa = world.sources[rec_file("REC_refcoco_unc_testA.jsonl")]
    assert testa.path == converted_rec("refcoco", "testA")["rec"]
    assert testa.image_folder == converted_rec("refcoco", "testA")["images"]
    wildcards = SimpleNamespace(path="grounding/REC_refcoco_unc_testA.jsonl")
    assert world.images(wildcards) == [converted_rec("refcoco", "testA")["images"]]
    assert world.shikra_rec_files == ["REC_ref3_train.jsonl", "REC_refcocog_umd_val.jsonl"]
    assert world.parquet_splits_of("refcoco") == ["testA", "val"]
    assert world.rec_summaries == [
        converted_rec("refcoco", split)["summary"] for split in ("testA", "val")
    ]


def test_the_real_world_reads_preference_pairs_from_parquet_with_its_options():
    world = RealWorld(
        {"preference_parquet": {"shards": [0], "max_rows": 10, "on_bad_record": "skip"}},
        [],
        train_annotations=False,
    )
    source = world.sources[f"{WORLD_DIR}/preference_train.json"]
    assert source.kind == "rlaif_v"
    wildcards = SimpleNamespace(path="preference_train.json")
    assert world.options(wildcards) == {"max_rows": 10, "on_bad_record": "skip"}
