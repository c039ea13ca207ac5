"""SFT: training glue, yes/no scoring, bad records, and resume after a kill."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Trainer

from mllm.data.errors import DataError
from mllm.data.grounding import prepare_grounding_sft
from mllm.data.images import load_image
from mllm.eval.yesno import normalise, score
from mllm.family.registry import load_model
from mllm.preference.settings import PreferenceSettings
from mllm.train.checkpoint_lock import CheckpointsInUse, exclusive_checkpoints
from mllm.train.datasets import SupervisedDataset
from mllm.train.settings import TrainSettings
from mllm.train.sft import train_sft
from mllm.train.trainer import resumable_checkpoint, run_fingerprint
from tests.conftest import write_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]


def write_sft_data(root: Path, n_images: int = 6) -> tuple[Path, Path]:
    """Yes/no records on small random PNGs, train/test on disjoint images."""
    (root / "images").mkdir(parents=True)
    records = []
    for index in range(n_images):
        pixels = np.random.default_rng(index).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{index}.png")
        for noun, answer in (("dog", "Yes"), ("cup", "No")):
            records.append(
                {
                    "id": len(records),
                    "image": f"images/{index}.png",
                    "conversations": [
                        {
                            "role": "user",
                            "content": f"<image>\nIs there a {noun} in the image? Please answer yes or no.",
                        },
                        {"role": "assistant", "content": answer},
                    ],
                }
            )
    split = 2 * (n_images - 2)
    train, test = root / "train.json", root / "test.json"
    train.write_text(json.dumps(records[:split]))
    test.write_text(json.dumps(records[split:]))
    return train, test


SETTINGS = dict(
    learning_rate=1e-3,
    max_steps=6,
    per_device_batch_size=2,
    save_steps=2,
    logging_steps=1,
    max_length=128,
    seed=0,
)


def run_sft(tmp_path: Path, train: Path, test: Path, **overrides) -> dict:
    return train_sft(
        start_model_dir=tmp_path / "base",
        train_file=train,
        eval_file=test,
        image_folder=train.parent,
        settings=TrainSettings.from_dict({**SETTINGS, **overrides}),
        model_dir=tmp_path / "sft",
        checkpoint_dir=tmp_path / "checkpoints",
        state_path=tmp_path / "state.json",
        metrics_path=tmp_path / "metrics.json",
    )


@pytest.fixture
def base_and_data(tmp_path):
    write_tiny_checkpoint(tmp_path / "base")
    return write_sft_data(tmp_path / "data")


def test_normalise_takes_the_leading_yes_or_no():
    assert [
        normalise(a)
        for a in ("Yes", "no.", " YES, there is", "No, it is not", "a dog", "", "yesterday")
    ] == [
        "yes",
        "no",
        "yes",
        "no",
        None,
        None,
        None,
    ]


def test_unparseable_answers_count_as_wrong_and_are_counted():
    metrics = score(["yes", None, "no", None], ["yes", "no", "no", "yes"])
    assert metrics["accuracy"] == 0.5 and metrics["unparseable"] == 2 and metrics["n"] == 4


def test_lora_sft_writes_a_merged_model_trainer_state_and_metrics(tmp_path, base_and_data):
    train, test = base_and_data
    metrics = run_sft(tmp_path, train, test, lora={"r": 4, "alpha": 8, "dropout": 0.0})
    assert metrics["global_step"] == 6 and metrics["resumed_from"] is None
    assert metrics["eval_loss"] < metrics["eval_loss_before"]
    reloaded = load_model(tmp_path / "sft")  # merged: a plain model directory, no adapter needed
    assert not any("lora" in name for name, _ in reloaded.model.named_parameters())
    history = json.loads((tmp_path / "state.json").read_text())["log_history"]
    assert sum("loss" in entry for entry in history) >= 6


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda r: r[1].update(image="images/missing.png"), r"record 1 \(id 1\).*missing\.png"),
        (lambda r: r[2].update(conversations=[]), r"record 2 \(id 2\).*no assistant turn"),
        (
            lambda r: r[0]["conversations"][0].update(content="<image>\n" + "Is it? " * 200),
            r"record 0 \(id 0\).*no supervised token left within max_length",
        ),
    ],
    ids=["missing-image", "empty-conversation", "answer-truncated-away"],
)
def test_bad_records_fail_before_training_naming_the_record(
    tmp_path, base_and_data, corrupt, message
):
    train, test = base_and_data
    records = json.loads(train.read_text())
    corrupt(records)
    train.write_text(json.dumps(records))
    with pytest.raises(DataError, match=message):
        run_sft(tmp_path, train, test)
    assert not (tmp_path / "sft").exists()  # no partial model directory


def test_a_bad_image_in_grounding_training_names_the_rec_line(tmp_path, base_and_data):
    train, _ = base_and_data
    rec = tmp_path / "REC_ref3_train.jsonl"
    rows = [
        {"img_path": f"images/{i}.png", "expression": "the dog", "bbox": [1, 1, 9, 9]}
        for i in (0, 1)
    ]
    rec.write_text("".join(json.dumps(row) + "\n" for row in rows))
    records = tmp_path / "grounding" / "train.json"
    prepare_grounding_sft(
        [rec],
        image_folder=train.parent,
        seed=0,
        output_path=records,
        summary_path=tmp_path / "grounding" / "summary.json",
    )
    (train.parent / "images" / "1.png").write_bytes(b"not a png")  # broken after conversion
    with pytest.raises(DataError, match=rf"^{re.escape(str(rec))}:2 \(as .*train\.json record 1 "):
        SupervisedDataset.from_file(
            records,
            load_model(tmp_path / "base"),
            max_length=SETTINGS["max_length"],
            image_folder=train.parent,
            max_truncated_share=0.0,
        )


LOCK_HOLDER = """
import sys
from mllm.train.checkpoint_lock import exclusive_checkpoints

with exclusive_checkpoints(sys.argv[1], "mllm.train.sft"):
    print("holding", flush=True)
    sys.stdin.read()  # until the test closes it
"""


def test_a_second_trainer_on_the_same_checkpoints_is_refused_naming_the_holder(
    tmp_path, base_and_data
):
    train, test = base_and_data
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(tmp_path / "checkpoints")],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "holding\n"
        host = re.escape(socket.gethostname())
        with pytest.raises(CheckpointsInUse, match=rf"with pid {holder.pid} on host {host}"):
            run_sft(tmp_path, train, test)
        assert not (tmp_path / "sft").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    run_sft(tmp_path, train, test)  # the holder is gone, and with it its lock
    assert (tmp_path / "sft").is_dir()


def test_the_other_ranks_of_a_job_take_no_lock_so_they_never_refuse_each_other(
    tmp_path, monkeypatch
):
    checkpoints = tmp_path / "checkpoints"
    with exclusive_checkpoints(checkpoints, "job"):  # rank 0 of this job
        with (
            pytest.raises(CheckpointsInUse, match=f"pid {os.getpid()}"),
            exclusive_checkpoints(checkpoints, "another job"),
        ):
            pass
        monkeypatch.setenv("RANK", "1")
        with exclusive_checkpoints(checkpoints, "job"):  # rank 1 of the same job
            pass
    monkeypatch.setenv("RANK", "0")
    with exclusive_checkpoints(checkpoints, "job"):  # released when the block ended
        pass


RESUMABLE_RUN = """
import sys, time
from pathlib import Path
from transformers import TrainerCallback
from tests.test_sft import SETTINGS
from mllm.train.settings import TrainSettings
from mllm.train.sft import train_sft

class Slow(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(float(sys.argv[2]))

root = Path(sys.argv[1])
import mllm.train.sft as sft_module
original = sft_module.train
sft_module.train = lambda *a, **k: original(*a, **k, trainer_kwargs={"callbacks": [Slow()]})
train_sft(start_model_dir=root / "base", train_file=root / "data/train.json", eval_file=root / "data/test.json",
          image_folder=root / "data", settings=TrainSettings.from_dict({**SETTINGS, "max_steps": 8}),
          model_dir=root / sys.argv[3], checkpoint_dir=root / (sys.argv[3] + "-checkpoints"),
          state_path=root / (sys.argv[3] + "-state.json"), metrics_path=root / (sys.argv[3] + "-metrics.json"))
"""


def start_run(root: Path, name: str, delay: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RESUMABLE_RUN, str(root), str(delay), name], cwd=REPO
    )


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_checkpoint_and_ends_like_an_uninterrupted_one(
    tmp_path, base_and_data
):
    assert start_run(tmp_path, "reference", 0).wait(timeout=300) == 0
    interrupted = start_run(tmp_path, "resumed", 1.0)
    checkpoint = tmp_path / "resumed-checkpoints" / "checkpoint-4"
    deadline = time.time() + 300
    while not (checkpoint / "trainer_state.json").exists():
        assert interrupted.poll() is None and time.time() < deadline, (
            "training ended before the kill"
        )
        time.sleep(0.2)
    time.sleep(0.5)
    interrupted.send_signal(signal.SIGKILL)
    interrupted.wait()
    assert not (tmp_path / "resumed").exists()
    assert start_run(tmp_path, "resumed", 0).wait(timeout=300) == 0
    reference = json.loads((tmp_path / "reference-metrics.json").read_text())
    resumed = json.loads((tmp_path / "resumed-metrics.json").read_text())
    assert resumed["resumed_from"] in ("checkpoint-4", "checkpoint-6")
    assert resumed["global_step"] == reference["global_step"] == 8
    assert resumed["eval_loss"] == pytest.approx(reference["eval_loss"], rel=1e-6)


class Killed(Exception):
    """Stands for a kill: the run stops where it is, leaving its files as they are."""


def test_a_run_killed_while_saving_resumes_from_the_last_complete_checkpoint(
    tmp_path, base_and_data, monkeypatch, caplog
):
    train, test = base_and_data
    reference = run_sft(tmp_path, train, test, max_steps=8)
    save_optimizer = Trainer._save_optimizer_and_scheduler

    def killed_after_the_weights(self, output_dir):
        if self.state.global_step == 6:  # checkpoint-6 holds its weights, nothing after them
            raise Killed
        save_optimizer(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", killed_after_the_weights)
    with pytest.raises(Killed):
        run_sft(tmp_path, train, test, max_steps=8)
    monkeypatch.undo()
    half_written = tmp_path / "checkpoints" / "checkpoint-6"
    assert (half_written / "model.safetensors").exists()
    assert not (half_written / "trainer_state.json").exists()

    with caplog.at_level(logging.WARNING, logger="mllm.train.trainer"):
        resumed = run_sft(tmp_path, train, test, max_steps=8)
    assert "removing incomplete checkpoint" in caplog.text and "checkpoint-6" in caplog.text
    assert resumed["resumed_from"] == "checkpoint-4"
    assert resumed["global_step"] == reference["global_step"] == 8
    assert resumed["eval_loss"] == pytest.approx(reference["eval_loss"], rel=1e-6)


def test_checkpoints_of_a_run_with_other_settings_are_not_resumed(tmp_path, base_and_data):
    train, test = base_and_data
    stale = tmp_path / "checkpoints" / "checkpoint-4"
    stale.mkdir(parents=True)  # left by a killed run with other inputs (no fingerprint marker)
    (stale / "trainer_state.json").write_text("{}")
    metrics = run_sft(tmp_path, train, test)
    assert metrics["resumed_from"] is None and metrics["global_step"] == 6
    assert not (tmp_path / "checkpoints").exists()  # a finished run cleans up its checkpoints


@pytest.mark.parametrize("ratio", [1, 5, -0.1])
def test_warmup_ratio_must_be_a_share_of_the_steps(ratio):
    # TrainingArguments reads warmup_steps >= 1 as a number of steps, not as a ratio.
    with pytest.raises(ValueError, match=r"warmup_ratio must be in \[0, 1\)"):
        TrainSettings.from_dict({"warmup_ratio": ratio})
    assert TrainSettings.from_dict({"warmup_ratio": 0.0}).warmup_ratio == 0.0


def test_answers_cut_at_max_length_are_counted_and_refused_above_the_share(
    tmp_path, base_and_data, caplog
):
    train, test = base_and_data
    records = json.loads(train.read_text())
    for record in records[:2]:
        record["conversations"][1]["content"] = "Yes, there is one. " * 40
    train.write_text(json.dumps(records))
    with caplog.at_level(logging.WARNING, logger="mllm.train.datasets"):
        dataset = SupervisedDataset.from_file(
            train,
            load_model(tmp_path / "base"),
            max_length=SETTINGS["max_length"],
            image_folder=train.parent,
            max_truncated_share=0.25,
        )
    assert len(dataset) == 8
    assert "2 of 8 samples are longer than max_length=128" in caplog.text
    assert "(first: record 0, id 0)" in caplog.text
    with pytest.raises(
        DataError, match=r"train\.json: 2 of 8 samples .*more than max_truncated_share=0\.2 "
    ):
        run_sft(tmp_path, train, test, max_truncated_share=0.2)
    assert not (tmp_path / "sft").exists()


def test_the_resume_fingerprint_covers_settings_job_inputs_data_and_code(tmp_path, base_and_data):
    train, _ = base_and_data
    loaded = load_model(tmp_path / "base")
    repository = tmp_path / "repository"  # a copy of the library whose code the test edits
    shutil.copytree(REPO / "mllm", repository / "mllm")

    def fingerprint(settings=None, job_inputs=None):
        dataset = SupervisedDataset.from_file(
            train, loaded, max_length=128, image_folder=train.parent, max_truncated_share=0.0
        )
        return run_fingerprint(
            settings or TrainSettings.from_dict(SETTINGS),
            loaded.model,
            loaded.tokenizer,
            dataset,
            job="mllm.preference.train",
            job_inputs=job_inputs or {"preference": PreferenceSettings()},
            repository=repository,
        )

    def changed(other: dict) -> list[str]:
        return sorted(name for name in base if base[name] != other.get(name))

    base = fingerprint()
    assert changed(fingerprint()) == []
    other_settings = TrainSettings.from_dict({**SETTINGS, "learning_rate": 2e-3})
    assert changed(fingerprint(settings=other_settings)) == ["settings"]
    for preference in ({"nll_weight": 1.0}, {"use_average_logp": True}, {"loss_type": "nca"}):
        other = {"preference": PreferenceSettings.from_dict(preference)}
        assert changed(fingerprint(job_inputs=other)) == ["job_inputs"], preference
    losses = repository / "mllm" / "preference" / "losses.py"
    losses.write_text(losses.read_text().replace("logsigmoid", "logsigmoid "))
    assert changed(fingerprint()) == ["code"]
    base = fingerprint()
    Image.new("RGB", (64, 64)).save(train.parent / "images" / "0.png")  # an image a record names
    assert changed(fingerprint()) == ["data"]
    base = fingerprint()
    with torch.no_grad():
        loaded.model.llm.lm_head.weight[0, 0] += 1.0
    assert changed(fingerprint()) == ["start_model"]
    base = fingerprint()
    loaded.tokenizer.add_tokens(["dog?"])  # another tokenizer, the same weights
    assert changed(fingerprint()) == ["start_model"]


def test_checkpoints_of_a_run_with_other_inputs_are_discarded_naming_them(tmp_path, caplog):
    fingerprint = {"settings": "a", "job_inputs": "b", "start_weights": "c", "data": "d"}
    checkpoints = tmp_path / "checkpoints"
    assert resumable_checkpoint(checkpoints, {**fingerprint, "code": "e"}) is None
    (checkpoints / "checkpoint-2").mkdir()
    with caplog.at_level(logging.WARNING, logger="mllm.train.trainer"):
        assert resumable_checkpoint(checkpoints, {**fingerprint, "code": "f"}) is None
    assert f"discarding the checkpoints in {checkpoints}: written by a run with other code" in (
        caplog.text
    )
    assert not (checkpoints / "checkpoint-2").exists()


@pytest.mark.parametrize("killed_at", [4, 8], ids=["mid-run", "after-the-last-step"])
def test_train_loss_of_a_resumed_run_covers_every_step(
    tmp_path, base_and_data, monkeypatch, killed_at
):
    train, test = base_and_data
    reference = run_sft(tmp_path, train, test, max_steps=8)
    save_checkpoint = Trainer._save_checkpoint

    def killed_after(self, *args, **kwargs):
        save_checkpoint(self, *args, **kwargs)
        if self.state.global_step == killed_at:
            raise Killed

    monkeypatch.setattr(Trainer, "_save_checkpoint", killed_after)
    with pytest.raises(Killed):
        run_sft(tmp_path, train, test, max_steps=8)
    monkeypatch.undo()
    resumed = run_sft(tmp_path, train, test, max_steps=8)
    assert resumed["resumed_from"] == f"checkpoint-{killed_at}"
    assert resumed["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-6)


def test_dataset_samples_equal_the_per_record_path_bit_for_bit(tmp_path, base_and_data):
    """The dataset decodes and processes each picture once for all its records; every sample
    must still equal ``training_sample`` on that record's freshly decoded image."""
    train, _ = base_and_data
    loaded = load_model(tmp_path / "base")
    records = json.loads(train.read_text())
    records.append(dict(records[0], id=len(records)))  # its picture seen again, far away
    dataset = SupervisedDataset(
        records, loaded, max_length=128, image_folder=str(train.parent), max_truncated_share=0.0
    )
    for index, record in enumerate(records):
        image = load_image(record["image"], train.parent, source="test")
        alone = loaded.family.training_sample(
            loaded, record["conversations"], [image], max_length=128, sample_id=record["id"]
        )
        shared = dataset[index]
        assert shared.keys() == alone.keys()
        for key, value in alone.items():
            if key == "pixel_values":
                assert len(shared[key]) == len(value)
                assert all(torch.equal(a, b) for a, b in zip(shared[key], value, strict=True))
            elif isinstance(value, torch.Tensor):
                assert shared[key].dtype == value.dtype and torch.equal(shared[key], value), key
            else:
                assert shared[key] == value, key
    assert dataset[0]["pixel_values"][0] is dataset[1]["pixel_values"][0]  # one picture, one tensor
