"""On-policy preference pairs: edits, pair selection, prompts and bad input (tiny fixtures)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mllm.data.errors import DataError
from mllm.eval.text_analysis import AnalyzerUnavailable, get_analyzer
from mllm.preference import on_policy as onpolicy_pairs
from mllm.preference.on_policy import (
    AnswerScorer,
    OnPolicySettings,
    PairStats,
    build_pairs,
    read_prompts,
    remove_hallucinations,
    select_pairs,
)

GT = ["dog", "person", "cup"]
QUESTION = "Describe the image in detail."


@pytest.fixture(scope="module")
def scorer():
    try:
        return AnswerScorer(get_analyzer("offline-rules"))
    except AnalyzerUnavailable as error:
        pytest.skip(f"analyzer unavailable: {error}")


# -- edits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "edited"),
    [
        (  # a middle clause
            "There is a dog on the left, a fork at the top and a person in the center.",
            "There is a dog on the left and a person in the center.",
        ),
        (  # the first clause: its lead-in moves to the next one
            "The image shows a red car at the top, a dog in the center and a cup on the right. "
            "The background is gray.",
            "The image shows a dog in the center and a cup on the right. The background is gray.",
        ),
        (  # a whole sentence of hallucinations goes, the faithful one stays
            "A photo of a person on the left. There is a knife and a fork.",
            "A photo of a person on the left.",
        ),
        ("A photo of a cat.", ""),  # nothing faithful left
        ("There is a dog and a cup.", "There is a dog and a cup."),  # nothing to remove
    ],
)
def test_clause_edits_remove_exactly_the_hallucinated_objects(scorer, text, edited):
    assert remove_hallucinations(text, GT, scorer, "clause") == edited


def test_sentence_edits_drop_whole_sentences(scorer):
    text = "There is a dog on the left and a fork at the top. A person is in the center."
    assert remove_hallucinations(text, GT, scorer, "sentence") == "A person is in the center."


# -- selection --------------------------------------------------------------------------------


def test_a_faithful_sample_at_least_as_complete_is_the_chosen_answer(scorer):
    answers = [
        "There is a dog on the left, a fork at the top and a person in the center.",  # fork
        "There is a dog on the left.",  # faithful but recalls less than the rejected one
        "A photo of a dog at the top, a person on the left and a cup in the center.",
    ]
    stats = PairStats()
    pairs = select_pairs(answers, GT, OnPolicySettings(), scorer, stats)
    assert len(pairs) == 1
    assert pairs[0]["rejected"] == answers[0] and pairs[0]["chosen"] == answers[2]
    assert pairs[0]["chosen_source"] == "sample" and pairs[0]["hallucinated"] == [["fork", "fork"]]
    assert stats.counts["hallucinated_samples"] == 1 and stats.counts["samples"] == 3


def test_without_a_complete_faithful_sample_the_edit_is_the_chosen_answer(scorer):
    answers = [
        "There is a dog on the left, a fork at the top and a person in the center.",
        "There is a dog on the left.",
    ]
    pairs = select_pairs(answers, GT, OnPolicySettings(), scorer)
    assert [(p["chosen"], p["chosen_source"]) for p in pairs] == [
        ("There is a dog on the left and a person in the center.", "edit")
    ]
    # Samples only: the short faithful answer would teach "say less", so no pair.
    stats = PairStats()
    assert select_pairs(answers, GT, OnPolicySettings(chosen=("sample",)), scorer, stats) == []
    assert stats.counts["rejected_without_faithful_chosen"] == 1


def test_a_mention_ratio_keeps_chosen_answers_as_long_in_objects(scorer):
    answers = [
        "There is a dog on the left and a fork at the top.",  # 2 mentions, 1 hallucinated
        "There is a dog on the left.",  # faithful, as complete, but 1 mention
        "There is a dog on the left and a cup at the top.",  # faithful, 2 mentions
    ]
    settings = OnPolicySettings(min_mention_ratio=1.0)
    pairs = select_pairs(answers, GT, settings, scorer)
    assert [p["chosen"] for p in pairs] == [answers[2]]
    # Without such a sample, and an edit (fewer mentions) not allowed either: no pair.
    stats = PairStats()
    assert select_pairs(answers[:2], GT, settings, scorer, stats) == []
    assert stats.counts["rejected_without_faithful_chosen"] == 1


def test_pairs_per_image_are_capped_and_duplicate_rejections_merged(scorer):
    bad = ["There is a dog and a fork.", "There is a dog and a fork.", "There is a dog and a car."]
    settings = OnPolicySettings(max_pairs_per_image=1, chosen=("edit",))
    assert len(select_pairs(bad, GT, settings, scorer)) == 1
    assert len(select_pairs(bad, GT, OnPolicySettings(chosen=("edit",)), scorer)) == 2


def test_empty_answers_are_skipped_and_counted(scorer):
    stats = PairStats()
    answers = ["", "   ", "There is a dog and a fork."]
    pairs = select_pairs(answers, GT, OnPolicySettings(chosen=("edit",)), scorer, stats)
    assert stats.counts["empty_samples_skipped"] == 2 and len(pairs) == 1
    assert select_pairs(["", ""], GT, OnPolicySettings(), scorer, stats) == []
    assert stats.counts["empty_samples_skipped"] == 4


def test_no_hallucination_means_no_pair(scorer):
    stats = PairStats()
    assert select_pairs(["There is a dog.", "A cup."], GT, OnPolicySettings(), scorer, stats) == []
    assert stats.counts["prompts_without_hallucination"] == 1


def test_identical_chosen_and_rejected_are_skipped_and_counted(scorer, monkeypatch):
    # A faulty correction that returns the rejected answer unchanged must not become a pair.
    monkeypatch.setattr(onpolicy_pairs, "_edit", lambda rejected, *args: rejected)
    stats = PairStats()
    pairs = select_pairs(
        ["There is a dog and a fork."], GT, OnPolicySettings(chosen=("edit",)), scorer, stats
    )
    assert pairs == [] and stats.counts["identical_pairs_skipped"] == 1


def test_settings_reject_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="unknown key"):
        OnPolicySettings.from_dict({"samples": 4})
    with pytest.raises(ValueError, match="chosen"):
        OnPolicySettings(chosen=("gt",))
    with pytest.raises(ValueError, match="samples_per_image"):
        OnPolicySettings(samples_per_image=1)
    assert OnPolicySettings(samples_per_image=1, chosen=("edit",)).samples_per_image == 1


# -- prompts and the whole build --------------------------------------------------------------


def prompt_record(idx, **overrides):
    record = {
        "idx": idx,
        "question": QUESTION,
        "chosen": "ignored",
        "rejected": "ignored too",
        "image_path": f"img{idx}.png",
        "metainfos": {"image_id": idx},
    }
    return {**record, **overrides}


@pytest.fixture
def image_folder(tmp_path):
    for idx in range(3):
        pixels = np.random.default_rng(idx).integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"img{idx}.png")
    return tmp_path


def test_prompt_image_ids_come_from_the_record_or_a_coco_file_name():
    prompts = read_prompts(
        [
            prompt_record(0),
            prompt_record(1, metainfos={}, image_id=7),
            prompt_record(2, metainfos={}, image_path="val2014/COCO_val2014_000000000042.jpg"),
        ],
        source="prompts.json",
    )
    assert [p.image_id for p in prompts] == [0, 7, 42]
    assert len(read_prompts([prompt_record(i) for i in range(3)], source="p", max_images=2)) == 2


def test_a_prompt_without_image_or_image_id_names_its_idx():
    with pytest.raises(DataError, match="idx 5.*no image"):
        read_prompts([prompt_record(5, image_path=None)], source="prompts.json")
    with pytest.raises(DataError, match="idx 6.*no image id"):
        read_prompts([prompt_record(6, metainfos={}, image_path="x.png")], source="prompts.json")


def fake_generate(answers_per_prompt):
    """A stand-in for the model: the same K answers for every prompt."""

    def generate(questions, images):
        assert len(questions) == len(images)
        return [answers_per_prompt[i % len(answers_per_prompt)] for i in range(len(questions))]

    return generate


def test_build_pairs_writes_preference_records(scorer, image_folder):
    prompts = read_prompts([prompt_record(0), prompt_record(1)], source="prompts.json")
    generate = fake_generate(
        ["There is a dog on the left and a fork at the top.", "There is a dog and a person."]
    )
    records, stats = build_pairs(
        prompts,
        {0: GT, 1: ["dog"]},
        generate,
        OnPolicySettings(samples_per_image=2),
        scorer,
        image_folder=image_folder,
    )
    assert [r["idx"] for r in records] == [0, 1, 2]
    assert records[0] == {
        "idx": 0,
        "question": QUESTION,
        "chosen": "There is a dog and a person.",
        "rejected": "There is a dog on the left and a fork at the top.",
        "image_path": "img0.png",
        "metainfos": {
            "image_id": 0,
            "prompt_idx": 0,
            "chosen_source": "sample",
            "hallucinated": [["fork", "fork"]],
            "chosen_recalled": ["dog", "person"],
            "rejected_recalled": ["dog"],
        },
    }
    # Image 1 holds only a dog: both answers hallucinate, so each one's edit is chosen.
    assert [r["chosen"] for r in records[1:]] == ["There is a dog on the left.", "There is a dog."]
    assert {r["metainfos"]["chosen_source"] for r in records[1:]} == {"edit"}
    assert stats.counts["pairs"] == 3 and json.loads(json.dumps(records)) == records


def test_a_missing_image_names_its_idx_or_is_counted(scorer, image_folder):
    prompts = read_prompts(
        [prompt_record(0), prompt_record(9, image_path="missing.png")], source="prompts.json"
    )
    generate = fake_generate(["There is a dog and a fork.", "There is a dog."])
    with pytest.raises(DataError, match=r"idx 9.*missing\.png"):
        build_pairs(
            prompts, {0: GT, 9: GT}, generate, OnPolicySettings(), scorer, image_folder=image_folder
        )
    records, stats = build_pairs(
        prompts,
        {0: GT, 9: GT},
        generate,
        OnPolicySettings(on_bad_record="skip"),
        scorer,
        image_folder=image_folder,
    )
    assert len(records) == 1 and stats.counts["prompts_skipped"] == 1
    assert "idx 9" in stats.skipped_records[0]


def test_an_image_without_ground_truth_names_its_idx(scorer, image_folder):
    prompts = read_prompts([prompt_record(1)], source="prompts.json")
    with pytest.raises(DataError, match="idx 1.*no ground-truth"):
        build_pairs(
            prompts,
            {},
            fake_generate(["x", "y"]),
            OnPolicySettings(),
            scorer,
            image_folder=image_folder,
        )
