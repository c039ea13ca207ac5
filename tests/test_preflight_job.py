"""The preflight job: a training data set's image-token budget under its start model, written as a
summary or refused (naming the sample) with nothing written — before any training rule runs."""

from __future__ import annotations

import json

import pytest

from mllm.data.errors import DataError
from mllm.data.images import ImageLoader
from mllm.data.preprocess import read_sft_record
from mllm.family import tiny
from mllm.family.registry import load_model
from mllm.train.preflight import preflight_records
from tests.test_sft import write_sft_data
from tests.test_workflow_real import write_preference_fixture


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny.build("qwen2_5_vl", tmp_path_factory.mktemp("preflight") / "qwen2_5_vl")


def run(checkpoint, data_file, kind, max_length, summary_path, image_folder):
    return preflight_records(
        start_model_dir=checkpoint,
        data_file=data_file,
        kind=kind,
        max_length=max_length,
        refuse_over_length=False,
        image_folder=image_folder,
        summary_path=summary_path,
    )


def test_preflight_writes_the_length_distribution_of_sft_records(checkpoint, tmp_path):
    train, _ = write_sft_data(tmp_path / "sft", n_images=3)
    summary_path = tmp_path / "summary.json"
    summary = run(checkpoint, train, "sft", 4096, summary_path, train.parent)
    assert json.loads(summary_path.read_text()) == summary
    assert summary["samples"] == len(json.loads(train.read_text()))
    assert summary["family"] == "qwen2_5_vl" and summary["over_max_length"] == []
    assert 0 < summary["image_tokens"]["min"] < summary["sequence_length"]["min"]


def test_preflight_refuses_a_cut_inside_image_tokens_naming_the_sample(checkpoint, tmp_path):
    train, _ = write_sft_data(tmp_path / "sft", n_images=3)
    summary_path = tmp_path / "summary.json"
    loaded = load_model(checkpoint)
    loader = ImageLoader(str(train.parent), max_images=0)
    conversations, images = read_sft_record(json.loads(train.read_text())[0], loader)
    input_ids = loaded.family.training_sample(
        loaded, conversations, images, max_length=4096, sample_id=0
    )["input_ids"]
    region = loaded.family.image_region_ids(loaded)
    first_image_token = next(k for k, token in enumerate(input_ids.tolist()) if token in region)
    inside = first_image_token + 2
    with pytest.raises(DataError, match=f"{train}: sample 0: .*inside image tokens"):
        run(checkpoint, train, "sft", inside, summary_path, train.parent)
    assert not summary_path.exists()


def test_preflight_counts_both_responses_of_every_preference_pair(checkpoint, tmp_path):
    pairs, images = write_preference_fixture(tmp_path)
    summary = run(checkpoint, pairs, "preference", 4096, tmp_path / "summary.json", images)
    assert summary["samples"] == 2 * len(json.loads(pairs.read_text()))
