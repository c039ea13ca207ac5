"""The job modules' command line (`mllm.launch.main`) as the workflow renders it, and real
torchrun runs with 2 ranks on CPU (gloo) that must write what one process writes."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mllm.data.errors import BadRecordPolicy
from mllm.family.registry import load_model
from mllm.launch import job_arguments, main
from mllm.preference.reference import build_reference_logps
from mllm.preference.settings import PreferenceSettings
from mllm.preference.train import train_preference
from mllm.train.settings import TrainSettings
from mllm.train.sft import train_sft
from tests.conftest import write_tiny_checkpoint
from tests.test_preference import noise_png, pair_record
from tests.test_sft import SETTINGS, write_sft_data

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "workflow" / "config.yaml"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
# job -> the module whose `python -m` runs it
JOB_MODULES = {
    "build_base_model": "mllm.demo.base_model",
    "train_sft": "mllm.train.sft",
    "build_reference_logps": "mllm.preference.reference",
    "train_preference": "mllm.preference.train",
}
SFT_PATHS = [
    "start_model_dir=base",
    "model_dir=sft",
    "checkpoint_dir=checkpoints",
    "state_path=state.json",
    "metrics_path=metrics.json",
]


def launch(job: str, spec: dict, *paths: str, ranks: int = 1) -> subprocess.CompletedProcess:
    """Run one job like the rule does (2 CPU threads for the whole job)."""
    launcher = TORCHRUN if ranks == 2 else [sys.executable]
    command = [*launcher, "-m", JOB_MODULES[job], job, "--threads", "2", "--spec", json.dumps(spec)]
    result = subprocess.run(
        [*command, *paths], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_spec_and_paths_become_the_job_arguments():
    spec = {"settings": {"max_steps": 3}, "train_file": "t.json", "eval_file": None}
    arguments = job_arguments(train_sft, json.dumps(spec), [*SFT_PATHS[1:], "start_model_dir=b=c"])
    assert arguments == {
        "settings": TrainSettings(max_steps=3),
        "train_file": "t.json",
        "eval_file": None,
        "start_model_dir": "b=c",
        **dict(pair.split("=") for pair in SFT_PATHS[1:]),
    }
    with pytest.raises(ValueError, match="both in --spec and as a path"):
        job_arguments(train_sft, '{"model_dir": 1}', ["model_dir=x"])
    with pytest.raises(ValueError, match="expected NAME=PATH"):
        job_arguments(train_sft, "{}", ["model_dir"])
    with pytest.raises(ValueError, match=r"train_sft: settings: unknown key\(s\) \['steps'\]"):
        job_arguments(train_sft, '{"settings": {"steps": 3}, "train_file": "t"}', SFT_PATHS)
    with pytest.raises(ValueError, match=r"train_sft: unknown argument\(s\) \['epochs'\]"):
        job_arguments(train_sft, '{"epochs": 3}', SFT_PATHS)
    with pytest.raises(
        ValueError, match=r"train_sft: missing argument\(s\) \['train_file', 'settings'\]"
    ):
        job_arguments(train_sft, "{}", SFT_PATHS)
    with pytest.raises(ValueError, match="train_sft: train_file may not be null"):
        job_arguments(train_sft, '{"settings": {}, "train_file": null}', SFT_PATHS)


def test_arguments_are_converted_by_the_annotations_and_left_out_ones_take_the_defaults():
    paths = ["model_dir=m", "data_file=d.json", "output_path=o", "summary_path=s"]
    assert job_arguments(build_reference_logps, "{}", paths) == dict(p.split("=") for p in paths)
    with pytest.raises(
        ValueError, match=r"build_reference_logps: on_bad_record 'error' is not one"
    ):
        job_arguments(build_reference_logps, '{"on_bad_record": "error"}', paths)
    paths = [*SFT_PATHS, "reference_path=r", "data_file=d.json"]
    spec = {"preference": {"loss_type": "nca", "beta": 0.5}, "settings": {"max_steps": 2}}
    arguments = job_arguments(train_preference, json.dumps(spec), paths)
    assert arguments == {
        "preference": PreferenceSettings(loss_type="nca", beta=0.5),
        "settings": TrainSettings(max_steps=2),
        **dict(p.split("=") for p in paths),
    }
    spec["preference"] = {"rpo_alpha": 1}
    with pytest.raises(ValueError, match=r"train_preference: preference: unknown key"):
        job_arguments(train_preference, json.dumps(spec), paths)


def test_main_runs_the_named_job_and_rank_0_prints_its_result(capsys, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)

    def score(*, data_file: str, on_bad_record: BadRecordPolicy = "raise") -> dict:
        return {"data_file": data_file, "on_bad_record": on_bad_record}

    def other() -> None:
        raise AssertionError("not this one")

    main(
        [other, score],
        ["score", "--threads", "1", "--spec", '{"on_bad_record": "skip"}', "data_file=x"],
    )
    assert json.loads(capsys.readouterr().out) == {"data_file": "x", "on_bad_record": "skip"}
    with pytest.raises(SystemExit):
        main([score], ["train", "--spec", "{}"])


def test_the_launcher_imports_no_job_module():
    tree = ast.parse((REPO / "mllm" / "launch.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {
        a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names
    }
    assert imported & set(JOB_MODULES.values()) == set()
    assert not any(
        name.startswith(("mllm.train", "mllm.preference", "mllm.demo")) for name in imported
    )


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
    runs = {f"-m {module} {job} ": job for job, module in JOB_MODULES.items()}
    commands = [line for line in result.stdout.splitlines() if any(run in line for run in runs)]
    assert {job for run, job in runs.items() if any(run in line for line in commands)} == set(
        JOB_MODULES
    )
    torchrun = "-m torch.distributed.run --standalone --nproc_per_node=2 -m mllm."
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
    # (checkpoints.lock: the released flock file, mllm.train.checkpoint_lock)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "base",
        "checkpoints.lock",
        "data",
        "metrics.json",
        "sft",
        "state.json",
    ]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 4
    # one node; the global batch counts both ranks' per-device batches
    assert (
        metrics["nodes"] == 1
        and metrics["global_batch_size"] == 2 * SETTINGS["per_device_batch_size"]
    )
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
            "build_reference_logps",
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
