"""Grounding: readers and their bad-record policy, SFT conversations, box parsing, IoU, Acc@0.5."""

from __future__ import annotations

import json
import random

import pytest
import torch
from PIL import Image

from mllm.data.errors import DataError
from mllm.data.grounding import (
    EVAL_TEMPLATE,
    GROUNDING_TEMPLATES,
    SHIKRA_REC_FILES,
    Referent,
    check_templates,
    detect_format,
    grounding_conversations,
    grounding_eval_question,
    prepare_grounding_sft,
    read_coco_refs,
    read_referents,
)
from mllm.data.images import ImageProcessor
from mllm.data.special_tokens import IMAGE_TAG, MINICPMV_IMAGE_TAG
from mllm.demo.tokenizer import build_tokenizer
from mllm.eval.grounding import (
    GroundingEvalSettings,
    GroundingSplit,
    evaluate_grounding,
    iou,
    score_split,
)
from mllm.family.base import LoadedModel
from mllm.family.own import (
    OwnFamily,
    OwnProcessor,
    box_to_grid,
    grid_to_pixels,
    parse_grid_box,
)
from mllm.report.references import REFERENCE_ACCURACY
from mllm.train.datasets import rendered_boxes

OWN = OwnFamily()


def own_boxes(answers, referents):
    """The own family's pixel boxes of ``answers`` on images of the referents' sizes (its box
    convention needs no model)."""
    return [
        OWN.parse_box(None, answer, Image.new("RGB", (r.width, r.height)))
        for answer, r in zip(answers, referents, strict=True)
    ]


def own_answer(referent):
    """The own family's training answer for a referent."""
    image = Image.new("RGB", (referent.width, referent.height))
    return OWN.box_answer(None, referent.expression, referent.bbox_xyxy_px, image)


# --- fixtures ------------------------------------------------------------------------------


def write_png(path, width, height):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), "white").save(path)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def shikra_row(bbox=(2, 3, 20, 15), img_path="a.png", **extra):
    return {"img_path": img_path, "expression": "the cup", "bbox": list(bbox), **extra}


@pytest.fixture
def images(tmp_path):
    """a.png is 40×30, b.png 64×64."""
    write_png(tmp_path / "a.png", 40, 30)
    write_png(tmp_path / "b.png", 64, 64)
    return tmp_path


def write_coco_refs(folder, refs=None):
    instances = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 2, "file_name": "b.png", "width": 64, "height": 64},
        ],
        "annotations": [{"id": 10, "bbox": [2, 3, 18, 12]}, {"id": 20, "bbox": [0, 0, 64, 0]}],
    }
    refs = refs or [
        {
            "ref_id": 7,
            "ann_id": 10,
            "image_id": 1,
            "split": "val",
            "file_name": "a_10.png",  # refer's suffixed name: never a real file
            "sentences": [{"sent": "left cup"}, {"sent": "the small cup"}],
        },
        {
            "ref_id": 8,
            "ann_id": 10,
            "image_id": 1,
            "split": "train",
            "sentences": [{"sent": "cup"}],
        },
    ]
    (folder / "instances.json").write_text(json.dumps(instances))
    (folder / "refs.json").write_text(json.dumps(refs, indent=1))
    return folder / "refs.json"


# --- readers -------------------------------------------------------------------------------


def test_shikra_reader_takes_size_from_row(images):
    path = images / "rec.jsonl"
    write_jsonl(path, [shikra_row(width=40, height=30, dataset_name="refcoco")])
    [referent] = read_referents(path, image_folder=images)
    assert referent == Referent("a.png", "the cup", (2.0, 3.0, 20.0, 15.0), 40, 30, f"{path}:1")


def test_shikra_reader_reads_missing_size_from_image_header(images):
    path = images / "rec.jsonl"
    write_jsonl(path, [shikra_row(), shikra_row(img_path="b.png", bbox=(0, 0, 64, 64))])
    referents = read_referents(path, "shikra", image_folder=images)
    assert [(r.width, r.height, r.source_line) for r in referents] == [
        (40, 30, f"{path}:1"),
        (64, 64, f"{path}:2"),
    ]


def test_qwen_reader(images):
    path = images / "refcoco_val.jsonl"
    row = {"image": "b.png", "sent": "the dog", "bbox": [1, 2, 30, 40], "width": 64, "height": 64}
    write_jsonl(path, [row])
    assert detect_format(path) == "qwen"
    [referent] = read_referents(path, image_folder=images)
    assert (referent.image, referent.expression, referent.bbox_xyxy_px) == (
        "b.png",
        "the dog",
        (1.0, 2.0, 30.0, 40.0),
    )


def test_coco_refs_reader_one_referent_per_sentence_of_the_split(images):
    refs = write_coco_refs(images)
    assert detect_format(refs) == "coco_refs"
    referents = read_referents(refs, image_folder=images, split="val")
    assert [r.expression for r in referents] == ["left cup", "the small cup"]
    assert {(r.image, r.bbox_xyxy_px, r.width, r.height) for r in referents} == {
        ("a.png", (2.0, 3.0, 20.0, 15.0), 40, 30)  # [x, y, w, h] -> xyxy
    }
    assert referents[0].source_line == f"{refs}:ref_id=7"
    assert len(read_coco_refs(refs, image_folder=images)) == 3  # no split: every ref


def test_coco_refs_reader_names_an_unknown_annotation(images):
    refs = write_coco_refs(images, [{"ref_id": 9, "ann_id": 99, "image_id": 1, "sentences": []}])
    with pytest.raises(DataError, match=r"ref_id=9: ann_id 99 is not in"):
        read_coco_refs(refs, image_folder=images, on_bad_record="skip")


def test_dispatcher_rejects_unknown_formats_and_misplaced_options(images):
    path = images / "rec.jsonl"
    write_jsonl(path, [shikra_row(width=40, height=30)])
    with pytest.raises(ValueError, match="unknown grounding format"):
        read_referents(path, "pickle")
    with pytest.raises(ValueError, match="coco_refs"):
        read_referents(path, image_folder=images, split="val")
    (images / "other.jsonl").write_text('{"question": "?"}\n')
    with pytest.raises(DataError, match="cannot tell the grounding format"):
        read_referents(images / "other.jsonl")


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", "not valid JSON"),
        ('{"img_path": "a.png", "bbox": [1, 2, 3, 4]}', "'expression'"),
        ('{"img_path": "a.png", "expression": "x", "bbox": [1, 2, 3]}', "4 numbers"),
        ('{"img_path": "a.png", "expression": "x", "bbox": [1, 2, 3, "4"]}', "4 numbers"),
        ('{"img_path": "a.png", "expression": "x", "bbox": [1, 2, 3, 4], "width": 0}', "width"),
    ],
)
def test_malformed_records_raise_even_when_skipping(images, line, message):
    path = images / "rec.jsonl"
    path.write_text(json.dumps(shikra_row(width=40, height=30)) + "\n\n" + line + "\n")
    with pytest.raises(DataError, match=message) as error:
        read_referents(path, "shikra", image_folder=images, on_bad_record="skip")
    assert error.value.source == f"{path}:3"


# --- bad records: error or counted skip ----------------------------------------------------

BAD_ROWS = {
    "bbox_outside_image": shikra_row(bbox=(2, 3, 41.5, 15)),  # 40 px wide, 1 px tolerance
    "zero_area_bbox": shikra_row(bbox=(5, 3, 5, 15)),
    "missing_image": shikra_row(img_path="nowhere.png"),
    "unreadable_image": shikra_row(img_path="broken.png"),
}


@pytest.mark.parametrize("reason", sorted(BAD_ROWS))
def test_bad_record_errors_name_file_line_and_reason(images, reason):
    (images / "broken.png").write_bytes(b"not a png")
    path = images / "rec.jsonl"
    write_jsonl(path, [shikra_row(), BAD_ROWS[reason]])
    with pytest.raises(DataError, match=reason) as error:
        read_referents(path, image_folder=images)
    assert error.value.source == f"{path}:2"


def test_bad_records_are_skipped_and_counted_by_reason(images):
    (images / "broken.png").write_bytes(b"not a png")
    path = images / "rec.jsonl"
    within_tolerance = shikra_row(bbox=(-1, -0.5, 41, 31))
    write_jsonl(
        path, [shikra_row(), *BAD_ROWS.values(), BAD_ROWS["zero_area_bbox"], within_tolerance]
    )
    referents = read_referents(path, image_folder=images, on_bad_record="skip")
    assert [r.source_line for r in referents] == [f"{path}:1", f"{path}:7"]
    assert referents.skipped == {
        "bbox_outside_image": 1,
        "zero_area_bbox": 2,
        "missing_image": 1,
        "unreadable_image": 1,
    }


def test_coco_refs_skips_count_each_sentence(images):
    ref = {"ref_id": 3, "ann_id": 20, "image_id": 2, "sentences": [{"sent": "a"}, {"sent": "b"}]}
    refs = write_coco_refs(images, [ref])
    with pytest.raises(DataError, match="ref_id=3: zero_area_bbox"):
        read_coco_refs(refs, image_folder=images)
    skipped = read_coco_refs(refs, image_folder=images, on_bad_record="skip")
    assert (list(skipped), skipped.skipped) == ([], {"zero_area_bbox": 2})


def test_unknown_policy_is_rejected(images):
    write_jsonl(images / "rec.jsonl", [shikra_row()])
    with pytest.raises(ValueError, match="on_bad_record"):
        read_referents(images / "rec.jsonl", on_bad_record="ignore")


# --- conversations -------------------------------------------------------------------------


def referents_for_conversations(n=40):
    return [
        Referent(f"img{i}.png", f"thing {i}", (i, 2.5, i + 10.0, 30.0), 64, 48, f"f:{i + 1}")
        for i in range(n)
    ]


def test_conversations_are_deterministic_per_seed():
    referents = referents_for_conversations()
    first = grounding_conversations(referents, seed=1)
    assert grounding_conversations(referents, seed=1) == first
    assert grounding_conversations(referents, seed=2) != first
    questions = {record["conversations"][0]["content"].replace("thing", "") for record in first}
    assert len(questions) > 5  # the pool is used, not one phrasing


def test_conversations_keep_the_pixel_box_and_the_own_family_writes_it_on_the_grid():
    referents = referents_for_conversations(10)
    for record, referent in zip(grounding_conversations(referents, seed=0), referents, strict=True):
        user, assistant = record["conversations"]
        assert (record["image"], user["role"], assistant["role"]) == (
            referent.image,
            "user",
            "assistant",
        )
        assert user["content"].count(IMAGE_TAG) == 1
        assert f"<ref>{referent.expression}</ref>" in user["content"]
        assert assistant["expression"] == referent.expression and "content" not in assistant
        assert assistant["box"] == list(referent.bbox_xyxy_px)
        grid = box_to_grid(referent.bbox_xyxy_px, referent.width, referent.height)
        assert own_answer(referent) == (
            f"<ref>{referent.expression}</ref><box>({grid[0]},{grid[1]}),({grid[2]},{grid[3]})</box>"
        )
        assert parse_grid_box(own_answer(referent)) == grid
    assert [r["id"] for r in grounding_conversations(referents, seed=0)] == list(range(10))


def test_templates_are_checked():
    check_templates(GROUNDING_TEMPLATES)
    assert len(GROUNDING_TEMPLATES) >= 10
    for bad in ([], ["Where is <ref>{expr}</ref>?"], ["<image> where is {expr}?"]):
        with pytest.raises(ValueError):
            check_templates(bad)


def test_eval_question_is_the_training_wording_after_the_image():
    question = grounding_eval_question("the red car")
    assert question == EVAL_TEMPLATE.removeprefix(f"{IMAGE_TAG}\n").replace("{expr}", "the red car")
    assert IMAGE_TAG not in question and MINICPMV_IMAGE_TAG not in question
    assert "<ref>the red car</ref>" in question
    with pytest.raises(ValueError, match="must start with"):
        grounding_eval_question("x", template=GROUNDING_TEMPLATES[1])


# --- boxes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, box",
    [
        ("<ref>the cup</ref><box>(10,20),(300,400)</box>", (10, 20, 300, 400)),
        ("(300,400),(10,20)", (10, 20, 300, 400)),  # swapped corners
        ("(300,20),(10,400)", (10, 20, 300, 400)),  # one axis swapped
        ("(-5,20),(1200,1000)", (0, 20, 999, 999)),  # clamped to the grid
        ("(10.5,20.25),(30,40.75)", (10.5, 20.25, 30, 40.75)),
        ("( 10 , 20 ),(30 ,40 )", (10, 20, 30, 40)),
        ("(1,2),(3,4) or rather (5,6),(7,8)", (1, 2, 3, 4)),  # first box wins
    ],
)
def test_parse_box(text, box):
    assert parse_grid_box(text) == box


@pytest.mark.parametrize(
    "text",
    [
        "",
        "the cup is on the left",
        "(a,b),(c,d)",
        "(1,2,3),(4,5)",
        "(1),(2)",
        "(nan,1),(2,3)",
        "(1,2), (3,4)",  # Qwen-VL's pattern needs "),(" with no space
        "[10,20,30,40]",
    ],
)
def test_parse_box_garbage_is_none(text):
    assert parse_grid_box(text) is None
    assert OWN.parse_box(None, text, Image.new("RGB", (10, 10))) is None


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),  # identical
        ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),  # disjoint
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges
        ((0, 0, 10, 10), (2, 2, 7, 7), 0.25),  # nested
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),  # half overlap
        ((0, 0, 10, 10), (5, 5, 5, 8), 0.0),  # zero-area inside
        ((3, 3, 3, 3), (3, 3, 3, 3), 0.0),  # both empty
    ],
)
def test_iou(a, b, expected):
    assert iou(a, b) == pytest.approx(expected)
    assert iou(b, a) == pytest.approx(expected)


@pytest.mark.parametrize("width, height", [(640, 427), (64, 64), (1000, 1000), (7, 3000)])
def test_grid_round_trip_is_within_one_grid_cell(width, height):
    rng = random.Random(width)
    for _ in range(200):
        xs = sorted(rng.uniform(0, width) for _ in range(2))
        ys = sorted(rng.uniform(0, height) for _ in range(2))
        box = (xs[0], ys[0], xs[1], ys[1])
        back = grid_to_pixels(box_to_grid(box, width, height), width, height)
        image = Image.new("RGB", (width, height))
        assert OWN.parse_box(None, OWN.box_answer(None, "x", box, image), image) == back
        cells = (width, height, width, height)
        for original, restored, side in zip(box, back, cells, strict=True):
            assert abs(restored - original) <= side / 1000 + 1e-9


def test_grid_clamps_the_image_border():
    assert box_to_grid((-1, 0, 64, 64), 64, 64) == (0, 0, 999, 999)
    assert grid_to_pixels((0, 0, 999, 999), 64, 48) == (0, 0, 64, 48)


# --- scoring -------------------------------------------------------------------------------


def test_score_split_counts_parse_failures_as_misses():
    referent = Referent("a.png", "the cup", (0.0, 0.0, 50.0, 50.0), 100, 100, "f:1")
    answers = [
        "<box>(0,0),(499,499)</box>",  # hit: 499/999·100 ≈ 49.95 px a side
        "<box>(500,500),(999,999)</box>",  # disjoint miss
        "I cannot see it",  # parse failure
        "<box>(0,0),(999,999)</box>",  # IoU 0.25: miss
    ]
    score = score_split(answers, own_boxes(answers, [referent] * 4), [referent] * 4)
    summary = {key: value for key, value in score.items() if key != "items"}
    assert summary == pytest.approx(
        {
            "n": 4,
            "hits": 1,
            "acc_at_0_5": 0.25,
            "parse_failures": 1,
            "parse_failure_rate": 0.25,
            "mean_iou": ((499 / 999 * 100) ** 2 / 2500 + 0.25) / 4,
        }
    )
    assert [item["hit"] for item in score["items"]] == [True, False, False, False]
    assert score["items"][2] == {
        "image": "a.png",
        "expression": "the cup",
        "answer": "I cannot see it",
        "gt_box": [0.0, 0.0, 50.0, 50.0],
        "pred_box": None,
        "iou": 0.0,
        "hit": False,
    }


def test_score_split_rejects_misaligned_or_empty_input():
    referent = Referent("a.png", "x", (0.0, 0.0, 5.0, 5.0), 10, 10, "f:1")
    with pytest.raises(ValueError, match="2 answers and 2 boxes for 1 referents"):
        score_split(["", ""], [None, None], [referent])
    with pytest.raises(ValueError, match="no referents"):
        score_split([], [], [])


def test_training_answers_score_perfectly():
    referents = referents_for_conversations()
    answers = [own_answer(referent) for referent in referents]
    score = score_split(answers, own_boxes(answers, referents), referents)
    assert score["acc_at_0_5"] == 1.0 and score["mean_iou"] > 0.95


def test_reference_numbers_cover_the_eight_rec_splits():
    assert set(REFERENCE_ACCURACY) == set(SHIKRA_REC_FILES)
    assert len(REFERENCE_ACCURACY) == 8
    assert REFERENCE_ACCURACY[("refcoco", "val")] == {
        "[L] 1000 grid": 0.675,
        "[Q0] raw pixels": 0.486,
    }
    assert SHIKRA_REC_FILES[("refcocog", "test")] == "REC_refcocog_umd_test.jsonl"


def test_eval_prompt_is_the_prefix_of_the_training_sample():
    tokenizer = build_tokenizer(["Where is the cup in the image?"] * 20, vocab_size=1300)
    processor = ImageProcessor(patch_size=14, scale_resolution=28)
    image = Image.new("RGB", (60, 30))  # sliced: several placeholders
    referent = Referent("a.png", "the cup", (2.0, 3.0, 20.0, 15.0), 60, 30, "f:1")
    loaded = LoadedModel(None, OwnProcessor(tokenizer, processor, 4), OWN)
    [record] = grounding_conversations([referent], seed=0, templates=[EVAL_TEMPLATE])
    conversations = rendered_boxes(loaded, record["conversations"], [image], "sample 0")
    assert conversations[1]["content"] == own_answer(referent)
    sample = OWN.training_sample(loaded, conversations, [image], max_length=512, sample_id=0)
    question = grounding_eval_question(referent.expression)
    prompt = OWN.generation_inputs(loaded, [question], [image])
    (prompt_ids,) = prompt["input_ids"]
    assert torch.equal(sample["input_ids"][: len(prompt_ids)], prompt_ids)
    assert torch.equal(sample["image_bound"], prompt["image_bound"][0])


# --- jobs: SFT records and split evaluation ------------------------------------------------


def test_prepare_grounding_sft_writes_records_and_counts_skips(images):
    good, bad = images / "good.jsonl", images / "bad.jsonl"
    write_jsonl(good, [shikra_row(), shikra_row(img_path="b.png", bbox=(0, 0, 32, 32))])
    write_jsonl(bad, [shikra_row(img_path="gone.png"), shikra_row(bbox=(5, 5, 5, 9))])
    summary = prepare_grounding_sft(
        [good, bad],
        image_folder=images,
        on_bad_record="skip",
        seed=0,
        output_path=images / "out/train.json",
        summary_path=images / "out/summary.json",
    )
    records = json.loads((images / "out/train.json").read_text())
    assert [r["image"] for r in records] == ["a.png", "b.png"]
    box_turn = records[1]["conversations"][1]
    assert box_turn == {
        "role": "assistant",
        "expression": box_turn["expression"],
        "box": [0, 0, 32, 32],
    }
    with Image.open(images / "b.png") as image:
        answer = OWN.box_answer(None, box_turn["expression"], tuple(box_turn["box"]), image)
    assert answer.endswith("<box>(0,0),(500,500)</box>")
    assert summary == json.loads((images / "out/summary.json").read_text())
    assert summary["records"] == 2
    assert summary["files"][str(bad)] == {
        "referents": 0,
        "skipped": {"missing_image": 1, "zero_area_bbox": 1},
    }


def test_prepare_grounding_sft_fails_without_output_when_nothing_is_usable(images):
    path = images / "rec.jsonl"
    write_jsonl(path, [shikra_row(img_path="gone.png")])
    with pytest.raises(DataError, match="missing_image"):
        prepare_grounding_sft(
            [path],
            image_folder=images,
            output_path=images / "train.json",
            summary_path=images / "summary.json",
        )
    with pytest.raises(DataError, match="no usable referring expressions"):
        prepare_grounding_sft(
            [path],
            image_folder=images,
            on_bad_record="skip",
            output_path=images / "train.json",
            summary_path=images / "summary.json",
        )
    assert not (images / "train.json").exists() and not (images / "summary.json").exists()


def grounding_split(folder, name, rows, image_folder):
    """A split of ``rows`` written to ``folder/name.jsonl``, scored into ``folder/out/``."""
    path = folder / f"{name}.jsonl"
    folder.mkdir(exist_ok=True)
    write_jsonl(path, rows)
    return GroundingSplit(
        labels={"stage": "base", "dataset": "refcoco", "split": name},
        referents=read_referents(path, image_folder=image_folder),
        metrics_path=folder / "out" / f"{name}.json",
        items_path=folder / "out" / f"{name}.jsonl",
    )


@pytest.fixture
def tiny_model(tmp_path):
    from mllm.family.registry import load_model
    from tests.conftest import write_tiny_checkpoint

    write_tiny_checkpoint(tmp_path / "model")
    return load_model(tmp_path / "model")


EVAL_SETTINGS = GroundingEvalSettings({"do_sample": False, "max_new_tokens": 6}, batch_size=2)


def test_evaluate_grounding_writes_metrics_and_one_row_per_referent(images, tiny_model):
    rows = [shikra_row(), shikra_row(img_path="b.png", bbox=(0, 0, 32, 32))]
    split = grounding_split(images, "val", rows, images)
    [metrics] = evaluate_grounding(tiny_model, [split], image_folder=images, settings=EVAL_SETTINGS)
    written = [json.loads(line) for line in split.items_path.read_text().splitlines()]
    assert metrics == json.loads(split.metrics_path.read_text())
    assert metrics["stage"] == "base" and metrics["split"] == "val" and metrics["n"] == 2
    # A random model writes no box: every item is a counted parse failure and a miss.
    assert metrics["parse_failures"] == 2 and metrics["hits"] == 0
    assert [r["image"] for r in written] == ["a.png", "b.png"]
    assert written[0]["gt_box"] == [2.0, 3.0, 20.0, 15.0] and written[0]["pred_box"] is None


def test_splits_scored_in_one_job_write_the_bytes_of_each_split_alone(images, tiny_model):
    """One model load for every split must not change a split's files: each is decoded from its
    own seed, as its own job would."""
    sampling = GroundingEvalSettings(
        {"do_sample": True, "max_new_tokens": 6, "temperature": 1.0}, batch_size=2, seed=3
    )
    rows = {
        "val": [shikra_row(), shikra_row(img_path="b.png", bbox=(0, 0, 32, 32))],
        "test": [shikra_row(img_path="b.png", bbox=(4, 4, 40, 40)), shikra_row()],
    }
    alone = {}
    for name, split_rows in rows.items():
        split = grounding_split(images / "alone", name, split_rows, images)
        evaluate_grounding(tiny_model, [split], image_folder=images, settings=sampling)
        alone[name] = (split.metrics_path.read_bytes(), split.items_path.read_bytes())
    together = [grounding_split(images / "together", n, r, images) for n, r in rows.items()]
    evaluate_grounding(tiny_model, together, image_folder=images, settings=sampling)
    assert {
        split.labels["split"]: (split.metrics_path.read_bytes(), split.items_path.read_bytes())
        for split in together
    } == alone


def test_a_failing_split_leaves_no_output_of_any_split(images, tiny_model):
    good = grounding_split(images, "val", [shikra_row()], images)
    # width/height given, so the reader does not decode the image; evaluating it does, and fails
    (images / "broken.png").write_bytes(b"not a png")
    broken = shikra_row(img_path="broken.png", width=40, height=30)
    bad = grounding_split(images, "test", [broken], images)
    with pytest.raises(DataError, match=r"broken\.png"):
        evaluate_grounding(tiny_model, [good, bad], image_folder=images, settings=EVAL_SETTINGS)
    assert not (images / "out").exists() or not any((images / "out").iterdir())


def test_eval_settings_defaults_and_unknown_keys():
    from mllm.eval.yesno import YesNoSettings

    settings = GroundingEvalSettings.from_dict({"generation": {"do_sample": False}})
    assert (settings.batch_size, settings.seed) == (32, 0)
    assert YesNoSettings.from_dict({"generation": {}, "seed": 3}) == YesNoSettings({}, 16, 3)
    with pytest.raises(ValueError, match=r"grounding\.eval: unknown key\(s\) \['batchsize'\]"):
        GroundingEvalSettings.from_dict({"generation": {}, "batchsize": 4}, where="grounding.eval")
