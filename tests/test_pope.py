"""POPE: the paper's construction (seeded), the published files' readers, the official answer
rule and its metrics (pinned on a hand-computed answer file), the evaluation's files, the
report's section and the benchmark files' integrity lines."""

from __future__ import annotations

import io
import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import mllm.eval.pope as pope_eval
from mllm.data.errors import DataError
from mllm.data.images import load_image
from mllm.data.pope import (
    OFFICIAL_FILES,
    AnnotatedImage,
    PopeConstruction,
    annotated_images,
    build_pope,
    build_pope_files,
    import_lmms_lab,
    import_published,
    question_text,
    read_official,
    read_pope,
)
from mllm.download.errors import FetchError
from mllm.download.pope import fetch_pope
from mllm.eval.pope import PopeEvalSettings, evaluate_pope, official_answer, score_answers
from mllm.records import read_jsonl
from mllm.report.content import ReportInputs
from mllm.report.integrity import read_benchmark_file
from mllm.report.page import build_report
from mllm.report.stats import pope_estimates
from mllm.workflow.plan import Plan
from mllm.workflow.world import POPE_FILES, POPE_SETTINGS

CATEGORIES = ["person", "dog", "cat", "car", "bicycle", "fork", "knife", "cup", "apple", "bird"]


def instances(objects_per_image: list[list[str]]) -> dict:
    """COCO instances of images with these category names (one annotation per name, and a
    repeated first one: duplicates must not count twice)."""
    ids = {name: index + 1 for index, name in enumerate(CATEGORIES)}
    images, annotations = [], []
    for image_id, names in enumerate(objects_per_image, start=1):
        images.append({"id": image_id, "file_name": f"img_{image_id}.png"})
        for name in [*names, *names[:1]]:
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": ids[name]}
            )
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n} for n, i in ids.items()],
    }


# person + dog co-occur in every image that has either; cup the most frequent object overall
SCENES = [
    ["person", "dog", "cup"],
    ["person", "dog", "cup", "fork"],
    ["person", "dog", "cup", "car"],
    ["cup", "knife", "bicycle"],
    ["cup", "cat", "fork", "bird"],
    ["person", "dog"],  # two objects: never sampled
    ["apple"],
]


def images(scenes=SCENES) -> list[AnnotatedImage]:
    return annotated_images(instances(scenes), "instances.json")


def test_images_have_their_distinct_objects_in_annotation_order():
    found = images()
    assert found[0] == AnnotatedImage(1, "img_1.png", ("person", "dog", "cup"))
    assert [len(image.objects) for image in found] == [3, 4, 4, 3, 4, 2, 1]


def test_construction_takes_images_with_three_objects_and_asks_three_plus_three():
    records, summary = build_pope(images(), PopeConstruction(images=500), "images/val/")
    # the world has 5 eligible images, fewer than the 500 asked: all of them, and it says so
    assert summary["images"] == summary["images_eligible"] == 5 and summary["images_asked"] == 500
    eligible = {image.file_name: set(image.objects) for image in images()[:5]}
    for setting in POPE_SETTINGS:
        rows = records[setting]
        assert len(rows) == 30
        assert [row["question_id"] for row in rows] == list(range(1, 31))
        assert [row["label"] for row in rows] == ["yes", "no"] * 15
        for start in range(0, 30, 6):
            block = rows[start : start + 6]
            assert len({row["image"] for row in block}) == 1
            objects = eligible[block[0]["image"].removeprefix("images/val/")]
            assert all(row["object"] in objects for row in block if row["label"] == "yes")
            assert all(row["object"] not in objects for row in block if row["label"] == "no")
            assert len({row["object"] for row in block}) == 6  # nothing asked twice
    # the same images, order and positive questions in every setting, as in the published files
    positives = {
        setting: [(r["image"], r["text"]) for r in records[setting] if r["label"] == "yes"]
        for setting in POPE_SETTINGS
    }
    assert positives["random"] == positives["popular"] == positives["adversarial"]


def test_negatives_follow_their_setting():
    records, summary = build_pope(images(), PopeConstruction(images=5, seed=3))
    frequency = summary["object_frequency"]
    assert next(iter(frequency)) == "cup" and "apple" not in frequency  # over sampled images only
    sampled = {image.file_name: image.objects for image in images()[:5]}
    # popular: the most frequent object neither in the image nor asked before for it
    for start in range(0, 30, 6):
        block = records["popular"][start : start + 6]
        objects = sampled[block[0]["image"]]
        asked: list[str] = []
        for positive, negative in zip(block[::2], block[1::2], strict=True):
            asked.append(positive["object"])
            expected = next(o for o in frequency if o not in objects and o not in asked)
            assert negative["object"] == expected
            asked.append(expected)
    # adversarial: the absent object seen most often with that positive (ties: any of them),
    # counted over the sampled images; random where no co-occurring object qualifies
    together = Counter(
        (a, b) for objects in sampled.values() for a in objects for b in objects if a != b
    )
    for start in range(0, 30, 6):
        block = records["adversarial"][start : start + 6]
        objects = sampled[block[0]["image"]]
        asked = []
        for positive, negative in zip(block[::2], block[1::2], strict=True):
            asked.append(positive["object"])
            counts = {
                other: together[positive["object"], other]
                for other in frequency
                if together[positive["object"], other] and other not in objects + tuple(asked)
            }
            allowed = (
                {o for o, c in counts.items() if c == max(counts.values())}
                if counts
                else {o for o in frequency if o not in objects + tuple(asked)}
            )
            assert negative["object"] in allowed
            asked.append(negative["object"])
    # random: only objects of the sampled images
    assert {r["object"] for r in records["random"]} <= set(frequency)


def test_construction_is_seeded():
    many = images([[CATEGORIES[(i + k) % 10] for k in range(3 + i % 2)] for i in range(12)])
    first, _ = build_pope(many, PopeConstruction(images=6, seed=0))
    again, _ = build_pope(many, PopeConstruction(images=6, seed=0))
    assert first == again
    others = [build_pope(many, PopeConstruction(images=6, seed=s))[0] for s in range(1, 6)]
    assert any(other != first for other in others)


def test_question_text_is_the_official_template_with_the_article_fixed():
    assert question_text("dog") == "Is there a dog in the image?"
    assert question_text("apple") == "Is there an apple in the image?"


def test_construction_without_eligible_images_or_negatives_fails_clearly():
    with pytest.raises(DataError, match="no image has at least 3 objects"):
        build_pope(images([["dog", "cat"]]), PopeConstruction())
    # three objects in all: no negative is left to ask about
    with pytest.raises(DataError, match="no object of the sampled images is left"):
        build_pope(images([["dog", "cat", "cup"]]), PopeConstruction())


def test_build_pope_files_writes_every_setting(tmp_path):
    source = tmp_path / "instances.json"
    source.write_text(json.dumps(instances(SCENES)))
    outputs = {setting: tmp_path / f"{setting}.jsonl" for setting in POPE_SETTINGS}
    summary = build_pope_files(source, outputs, PopeConstruction(images=4), image_prefix="x/")
    assert summary["questions"] == {setting: 24 for setting in POPE_SETTINGS}
    rows = read_pope(outputs["adversarial"])
    assert rows[0]["image"].startswith("x/img_") and set(rows[0]) >= {
        "question_id",
        "image",
        "text",
        "label",
    }


def test_missing_instances_fields_name_the_record():
    broken = instances(SCENES)
    del broken["annotations"][2]["category_id"]
    with pytest.raises(DataError, match=r"annotations\[2\].*'category_id'"):
        annotated_images(broken, "instances.json")


# --- the published files ----------------------------------------------------------------------


def test_official_json_lines_become_pope_records(tmp_path):
    path = tmp_path / "coco_pope_random.json"
    rows = [
        {
            "question_id": 1,
            "image": "COCO_val2014_000000310196.jpg",
            "text": "Is there a snowboard in the image?",
            "label": "yes",
        },
        {
            "question_id": 2,
            "image": "COCO_val2014_000000310196.jpg",
            "text": "Is there an apple in the image?",
            "label": "no",
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = read_official(path, image_prefix="coco/val2014/")
    assert records[0] == {
        "question_id": 1,
        "image": "coco/val2014/COCO_val2014_000000310196.jpg",
        "text": "Is there a snowboard in the image?",
        "label": "yes",
        "object": "snowboard",
        "image_id": 310196,
    }
    assert records[1]["object"] == "apple"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"question_id": 1, "image": "a.jpg", "text": "Is there a dog in the image?"}, "'label'"),
        ({"question_id": 1, "image": "", "text": "q", "label": "yes"}, "'image'"),
        ({"question_id": 1, "image": "a.jpg", "text": "q", "label": "maybe"}, "'yes' or 'no'"),
    ],
)
def test_bad_official_lines_name_file_line_and_field(tmp_path, row, message):
    path = tmp_path / "coco_pope_popular.json"
    good = {"question_id": 0, "image": "a.jpg", "text": "q", "label": "no"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=rf"coco_pope_popular.json:2: .*{message}"):
        read_official(path)


def encoded(mode: str, image_format: str) -> bytes:
    colour = {"RGBA": (10, 20, 30, 128), "L": 90, "P": 3, "RGB": (200, 10, 10)}[mode]
    buffer = io.BytesIO()
    Image.new(mode, (12, 8), colour).save(buffer, format=image_format)
    return buffer.getvalue()


def lmms_lab_shard(path, rows: list[dict], drop: str | None = None) -> None:
    """A parquet shard in lmms-lab/POPE's layout: the image a struct<bytes, path>."""
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    columns = {
        "id": pa.array([str(i) for i in range(len(rows))]),
        "question_id": pa.array([r["question_id"] for r in rows]),
        "question": pa.array([r["question"] for r in rows]),
        "answer": pa.array([r["answer"] for r in rows]),
        "image_source": pa.array([r["image_source"] for r in rows]),
        "image": pa.array([r["image"] for r in rows], type=image_type),
        "category": pa.array([r["category"] for r in rows]),
    }
    if drop:
        del columns[drop]
    pq.write_table(pa.table(columns), path)


def lmms_row(index: int, source: str, image: bytes | None, category: str, answer: str) -> dict:
    return {
        "question_id": str(index),
        "question": "Is there a dog in the image?",
        "answer": answer,
        "image_source": source,
        "image": {"bytes": image, "path": None},
        "category": category,
    }


def test_lmms_lab_parquet_becomes_pope_files_with_images_in_every_mode(tmp_path):
    modes = [("RGBA", "PNG"), ("L", "PNG"), ("P", "PNG"), ("RGB", "JPEG")]
    rows = []
    for setting in POPE_SETTINGS:
        for k, (mode, image_format) in enumerate(modes):
            source = f"COCO_val2014_00000000000{k}"
            rows.append(lmms_row(len(rows), source, encoded(mode, image_format), setting, "yes"))
            rows.append(lmms_row(len(rows), source, encoded(mode, image_format), setting, "no"))
    lmms_lab_shard(tmp_path / "test-00000-of-00002.parquet", rows[:10])
    lmms_lab_shard(tmp_path / "test-00001-of-00002.parquet", rows[10:])
    outputs = {setting: tmp_path / "world" / f"{setting}.jsonl" for setting in POPE_SETTINGS}
    summary = import_lmms_lab(
        sorted(tmp_path.glob("*.parquet")),
        outputs,
        tmp_path / "world" / "images",
        image_prefix="images/",
    )
    assert summary == {"questions": {s: 8 for s in POPE_SETTINGS}, "images": 4}
    records = read_pope(outputs["popular"])
    assert [r["question_id"] for r in records] == list(range(1, 9))
    assert [r["label"] for r in records] == ["yes", "no"] * 4
    assert records[-1]["image"] == "images/COCO_val2014_000000000003.jpg"
    assert records[0]["source_question_id"] == "8"
    for record in records[::2]:
        image = load_image(record["image"], tmp_path / "world", source="test")
        assert image.mode == "RGB" and image.size == (12, 8)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda rows: rows, r"missing column\(s\) \['category'\]"),
        (
            lambda rows: [rows[0], {**rows[1], "image": {"bytes": None, "path": "x"}}],
            "row 1: field 'image': no bytes",
        ),
        (
            lambda rows: [rows[0], {**rows[1], "image": {"bytes": b"junk", "path": None}}],
            "row 1: field 'image': cannot decode",
        ),
        (lambda rows: [rows[0], {**rows[1], "answer": ""}], "row 1: missing field 'answer'"),
        (lambda rows: [rows[0], {**rows[1], "category": "hard"}], "row 1: field 'category'"),
    ],
)
def test_bad_lmms_lab_rows_name_file_row_and_field_and_write_nothing(tmp_path, change, message):
    rows = [
        lmms_row(0, "a", encoded("RGB", "JPEG"), "random", "yes"),
        lmms_row(1, "b", encoded("RGB", "JPEG"), "random", "no"),
    ]
    shard = tmp_path / "shard.parquet"
    lmms_lab_shard(shard, change(rows), drop="category" if "column" in message else None)
    outputs = {"random": tmp_path / "out" / "random.jsonl"}
    with pytest.raises(DataError, match=rf"shard.parquet.*{message}"):
        import_lmms_lab([shard], outputs, tmp_path / "out" / "images")
    assert not (tmp_path / "out" / "images").exists() and not outputs["random"].exists()


# --- answers and metrics ----------------------------------------------------------------------

# label, answer; by hand: TP 2 (1, 10), FN 2 (3, 9), TN 1 (2), FP 5 (4-8); unparseable 5, 7, 8, 9
# of which 5, 7, 8 read as yes; "NO" (6) is a clear no the official rule reads as yes.
HAND_SCORED = [
    ("yes", "Yes, there is a dog."),
    ("no", "No, there is not."),
    ("yes", "No."),
    ("no", "Yes"),
    ("no", ""),
    ("no", "NO"),
    ("no", "Nope"),
    ("no", "Not at all."),
    ("yes", "There is a cat, not a dog."),
    ("yes", "yes"),
]


def test_official_rule_reads_the_first_sentence_without_commas():
    assert official_answer("Yes, there is a dog.") == "yes"
    assert official_answer("No, there is not.") == "no"
    assert official_answer("There is a cat, not a dog. No.") == "no"
    assert official_answer("A dog. There is no cat.") == "yes"  # only the first sentence
    for silently_yes in ("", "NO", "Nope", "Not at all.", "There isn't one", "No\nI think"):
        assert official_answer(silently_yes) == "yes"


def test_metrics_on_a_hand_computed_answer_file(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text("".join(json.dumps({"label": t, "answer": a}) + "\n" for t, a in HAND_SCORED))
    metrics = score_answers(read_jsonl(path))
    assert {k: metrics[k] for k in ("n", "tp", "fp", "tn", "fn")} == {
        "n": 10,
        "tp": 2,
        "fp": 5,
        "tn": 1,
        "fn": 2,
    }
    assert metrics["accuracy"] == pytest.approx(0.3)
    assert metrics["precision"] == pytest.approx(2 / 7)
    assert metrics["recall"] == pytest.approx(0.5)
    assert metrics["f1"] == pytest.approx(4 / 11)
    assert metrics["yes_ratio"] == pytest.approx(0.7)
    assert metrics["unparseable"] == 4 and metrics["unparseable_read_as_yes"] == 3
    assert metrics["official_disagrees"] == 1


def test_no_predicted_yes_gives_zero_precision_not_a_crash():
    metrics = score_answers([{"label": "yes", "answer": "No."}, {"label": "no", "answer": "No"}])
    assert metrics["precision"] == metrics["f1"] == 0.0 and metrics["accuracy"] == 0.5


def test_bootstrap_intervals_hold_the_point_metrics_and_are_seeded():
    rows = [{"label": t, "prediction": official_answer(a)} for t, a in HAND_SCORED * 5]
    estimates = pope_estimates(rows)
    metrics = score_answers([{"label": t, "answer": a} for t, a in HAND_SCORED * 5])
    for name, estimate in estimates.items():
        assert estimate.value == pytest.approx(metrics[name])
        assert estimate.low <= estimate.value <= estimate.high and estimate.low < estimate.high
    assert pope_estimates(rows) == estimates


def test_evaluation_answers_each_distinct_question_once_and_writes_every_setting(
    tmp_path, monkeypatch
):
    Image.new("RGB", (8, 8)).save(tmp_path / "img_1.png")
    source = tmp_path / "instances.json"
    source.write_text(json.dumps(instances(SCENES[:1] + [["cat", "fork", "bird", "car"]])))
    questions = {setting: tmp_path / f"{setting}.jsonl" for setting in POPE_SETTINGS}
    build_pope_files(source, questions, PopeConstruction(images=2, seed=0))
    asked = []

    def answer(loaded, prompts, images, settings, *, desc):
        asked.extend(prompts)
        return ["No." if "cat" in p else "Yes" for p in prompts]

    monkeypatch.setattr(pope_eval, "answer_questions", answer)
    (tmp_path / "img_2.png").write_bytes((tmp_path / "img_1.png").read_bytes())
    outputs = {s: (tmp_path / f"{s}.json", tmp_path / f"{s}.answers.jsonl") for s in POPE_SETTINGS}
    results = evaluate_pope(
        None,
        questions,
        image_folder=tmp_path,
        settings=PopeEvalSettings(generation={"do_sample": False}, prompt_suffix=" Answer."),
        stage="base",
        outputs=outputs,
    )
    per_setting = [read_pope(path) for path in questions.values()]
    distinct = {(r["image"], r["text"]) for rows in per_setting for r in rows}
    assert len(asked) == len(distinct) < sum(len(rows) for rows in per_setting)
    assert all(prompt.endswith("? Answer.") for prompt in asked)
    for setting, (metrics_path, answers_path) in outputs.items():
        written = json.loads(metrics_path.read_text())
        assert written == results[setting] and written["setting"] == setting
        rows = read_jsonl(answers_path)
        assert len(rows) == written["n"] == 12
        assert all(r["prediction"] == ("no" if r["object"] == "cat" else "yes") for r in rows)


# --- the workflow's plan and the report -------------------------------------------------------


def test_plan_evaluates_every_stage_and_setting_and_names_every_benchmark_file():
    config = {"decoding": {"strategies": {"greedy": {}}}, "stages": ["base"], "yesno": {}}
    assert Plan(config).pope_evaluations == []
    assert set(Plan(config).benchmark_files) == {"chair", "yesno"}
    plan = Plan({**config, "pope": {"eval": {}}})
    assert plan.pope_evaluations == [("base", s) for s in POPE_SETTINGS]
    assert plan.benchmark_files["pope/adversarial"] == POPE_FILES["adversarial"]


def test_integrity_reads_rows_sha256_and_the_resolved_revision(tmp_path):
    path = tmp_path / "random.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    provenance = tmp_path / "provenance.json"
    provenance.write_text(json.dumps({"source": "lmms-lab/POPE", "revision": "abc123"}))
    found = read_benchmark_file(path, provenance)
    assert (found.rows, found.source, found.revision) == (2, "lmms-lab/POPE", "abc123")
    assert len(found.sha256) == 64
    records = tmp_path / "test.json"
    records.write_text("[1, 2, 3]")
    assert read_benchmark_file(records).rows == 3


def test_report_shows_pope_for_every_stage_and_setting_with_integrity_lines(tmp_path):
    pope, answers, files = {}, {}, {}
    for stage in ("base", "sft"):
        for setting in POPE_SETTINGS:
            rows = [
                {"label": t, "answer": a, "prediction": official_answer(a)} for t, a in HAND_SCORED
            ]
            pope[stage, setting] = {"stage": stage, "setting": setting, **score_answers(rows)}
            answers[stage, setting] = rows
    for setting in POPE_SETTINGS:
        path = tmp_path / f"{setting}.jsonl"
        path.write_text('{"question_id": 1}\n')
        files[f"pope/{setting}"] = read_benchmark_file(path)
    report = build_report(
        ReportInputs(
            chair={},
            stages=["base", "sft"],
            pope=pope,
            pope_answers=answers,
            benchmark_files=files,
        )
    )
    page = report.html
    assert 'id="pope"' in page and '<a href="#pope">POPE</a>' in page
    assert page.count("<b>sft</b>") >= 3 and "adversarial" in page
    assert "0.300 <span" in page  # accuracy with its interval
    assert "4 (3 read as yes)" in page
    assert "pope/adversarial" in page and files["pope/random"].sha256[:16] in page
    assert "pope" in report.figures
    assert "POPE (random, popular, adversarial)" in page  # the overview's status


# --- the real world's published files ---------------------------------------------------------


def official_folder(folder, image: str = "COCO_val2014_000000000001.jpg"):
    folder.mkdir(parents=True)
    for setting, name in OFFICIAL_FILES.items():
        rows = [
            {
                "question_id": 1,
                "image": image,
                "text": "Is there a dog in the image?",
                "label": "yes",
            },
            {
                "question_id": 2,
                "image": image,
                "text": f"Is there a {setting} in the image?",
                "label": "no",
            },
        ]
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_official_files_are_fetched_with_their_digests_and_imported(tmp_path):
    published = official_folder(tmp_path / "published")
    provenance = fetch_pope(str(published), tmp_path / "downloads" / "pope", file_format="official")
    assert set(provenance["files"]) == set(OFFICIAL_FILES.values())
    assert all(len(f["sha256"]) == 64 for f in provenance["files"].values())
    world = tmp_path / "world"
    outputs = {s: world / "pope" / f"{s}.jsonl" for s in POPE_SETTINGS}
    summary = import_published(
        "official",
        tmp_path / "downloads" / "pope",
        outputs,
        image_dir=None,
        image_folder=tmp_path / "coco" / "val2014",
        image_root=world,
    )
    assert summary == {"questions": {s: 2 for s in POPE_SETTINGS}}
    row = read_pope(outputs["popular"])[1]
    assert row["image"] == "../coco/val2014/COCO_val2014_000000000001.jpg"
    assert row["object"] == "popular" and row["label"] == "no"
    with pytest.raises(DataError, match="need a COCO val2014 image folder"):
        import_published(
            "official", published, outputs, image_dir=None, image_folder=None, image_root=world
        )


def test_a_pinned_digest_that_does_not_match_fails_the_fetch(tmp_path):
    published = official_folder(tmp_path / "published")
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch_pope(
            str(published),
            tmp_path / "pope",
            file_format="official",
            sha256={"coco_pope_random.json": "0" * 64},
        )
    assert not (tmp_path / "pope").exists()


def test_lmms_lab_shards_from_a_folder_are_fetched_and_imported(tmp_path):
    folder = tmp_path / "lmms-lab" / "data"
    folder.mkdir(parents=True)
    rows = [
        lmms_row(i, f"COCO_val2014_{i:012d}", encoded("RGB", "JPEG"), setting, "yes")
        for i, setting in enumerate(POPE_SETTINGS)
    ]
    lmms_lab_shard(folder / "test-00000-of-00001.parquet", rows)
    fetched = tmp_path / "downloads" / "pope"
    provenance = fetch_pope(str(folder.parent), fetched, file_format="lmms_lab")
    assert list(provenance["files"]) == ["test-00000-of-00001.parquet"]
    world = tmp_path / "world"
    outputs = {s: world / "pope" / f"{s}.jsonl" for s in POPE_SETTINGS}
    summary = import_published(
        "lmms_lab",
        fetched,
        outputs,
        image_dir=world / "pope" / "images",
        image_folder=None,
        image_root=world,
    )
    assert summary["images"] == 3
    record = read_pope(outputs["adversarial"])[0]
    assert record["image"] == "pope/images/COCO_val2014_000000000002.jpg"
    assert load_image(record["image"], world, source="test").size == (12, 8)
