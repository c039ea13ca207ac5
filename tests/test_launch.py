"""The multi-process launch: `python -m mllm.launch` as the workflow renders it, and real torchrun
runs with 2 ranks on CPU (gloo) that must write what one process writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mllm.launch import job_arguments
from mllm.model.io import load_model
from mllm.train.settings import TrainSettings
from tests.conftest import write_tiny_checkpoint
from tests.test_preference import noise_png, pair_record
from tests.test_sft import SETTINGS, write_sft_data

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "workflow" / "config.yaml"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def launch(job: str, spec: dict, *paths: str, ranks: int = 1) -> subprocess.CompletedProcess:
    """Run one job like the rule does (2 CPU threads for the whole job)."""
    launcher = TORCHRUN if ranks == 2 else [sys.executable]
    command = [*launcher, "-m", "mllm.launch", job, "--threads", "2", "--spec", json.dumps(spec)]
    result = subprocess.run(
        [*command, *paths], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_spec_and_paths_become_the_job_arguments():
    arguments = job_arguments(
        "train_sft", json.dumps({"settings": {"max_steps": 3}, "train_file": "t.json"}), ["a=b=c"]
    )
    assert arguments == {
        "settings": TrainSettings(max_steps=3),
        "train_file": "t.json",
        "a": "b=c",
    }
    with pytest.raises(ValueError, match="both in --spec and as a path"):
        job_arguments("train_sft", '{"a": 1}', ["a=x"])
    with pytest.raises(ValueError, match="expected NAME=PATH"):
        job_arguments("train_sft", "{}", ["model_dir"])
    with pytest.raises(ValueError, match=r"train_sft: settings: unknown key\(s\) \['steps'\]"):
        job_arguments("train_sft", '{"settings": {"steps": 3}}', [])


@pytest.mark.parametrize("gpus", [0, 1, 2])
def test_training_rules_launch_torchrun_only_with_several_gpus(tmp_path, gpus):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["compute"].update(train_gpus=gpus, eval_gpus=gpus)
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path)]
        + ["--configfile", str(configfile), "-n", "-p", "report"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    commands = [line for line in result.stdout.splitlines() if "-m mllm.launch" in line]
    jobs = {"build_base_model", "train_sft", "reference_logps", "train_preference"}
    assert {line.split("-m mllm.launch ")[1].split()[0] for line in commands} == jobs
    torchrun = "-m torch.distributed.run --standalone --nproc_per_node=2 -m mllm.launch"
    for line in commands:
        assert (torchrun in line) == (gpus == 2), line
        assert "> logs/" in line and line.endswith("2>&1")


@pytest.mark.slow
def test_sft_on_two_ranks_writes_one_loadable_model(tmp_path):
    write_tiny_checkpoint(tmp_path / "base")
    train, test = write_sft_data(tmp_path / "data")
    spec = {
        "train_file": str(train),
        "eval_file": str(test),
        "image_folder": str(train.parent),
        "settings": {**SETTINGS, "max_steps": 4, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "checkpoint_dir": str(tmp_path / "checkpoints"),
    }
    result = launch(
        "train_sft",
        spec,
        f"start_model_dir={tmp_path / 'base'}",
        f"model_dir={tmp_path / 'sft'}",
        f"state_path={tmp_path / 'state.json'}",
        f"metrics_path={tmp_path / 'metrics.json'}",
        ranks=2,
    )
    # One writer: exactly one model directory, no scratch directories or checkpoints left over.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "base",
        "data",
        "metrics.json",
        "sft",
        "state.json",
    ]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 4
    assert metrics["eval_loss"] < metrics["eval_loss_before"]
    assert result.stdout.count('"global_step"') == 1  # only rank 0 reports
    reloaded = load_model(tmp_path / "sft")
    assert not any("lora" in name for name, _ in reloaded.model.named_parameters())


@pytest.mark.slow
def test_reference_logps_sharded_over_two_ranks_are_the_single_process_bytes(tmp_path):
    write_tiny_checkpoint(tmp_path / "base")
    images = tmp_path / "images"
    images.mkdir()
    records = [pair_record(idx) for idx in range(5)]
    for record in records:
        (images / record["image_path"]).write_bytes(noise_png(record["idx"], size=64))
    data = tmp_path / "pairs.json"
    data.write_text(json.dumps(records))
    spec = {
        "data_file": str(data),
        "image_folder": str(images),
        "max_length": 256,
        "batch_size": 2,  # 3 batches: rank 0 scores batches 0 and 2, rank 1 batch 1
        "on_bad_record": "raise",
    }
    for name, ranks in (("single", 1), ("sharded", 2)):
        launch(
            "reference_logps",
            spec,
            f"model_dir={tmp_path / 'base'}",
            f"output_path={tmp_path / name}.safetensors",
            f"summary_path={tmp_path / name}.json",
            ranks=ranks,
        )
    single = (tmp_path / "single.safetensors").read_bytes()
    assert (tmp_path / "sharded.safetensors").read_bytes() == single
    assert (tmp_path / "sharded.json").read_text() == (tmp_path / "single.json").read_text()
    assert json.loads((tmp_path / "single.json").read_text())["pairs"] == 5
