"""The workflow itself: config validation, lint, formatting, dry-runs and a tiny end-to-end run
that then proves reruns are minimal."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "workflow" / "config.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def tiny_snakefile(workdir: Path) -> Path:
    """The tiny run's own copy of the workflow (tests/conftest.py: tiny_run)."""
    return workdir / "workflow" / "Snakefile"


def dry_run_changed(tiny_run, name: str, change) -> str:
    """The dry-run output of the finished tiny run under its config changed by ``change``."""
    workdir, config = tiny_run
    changed = yaml.safe_load(config.read_text())
    change(changed)
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(changed))
    result = snakemake(
        "-n", "report", workdir=workdir, configfile=path, snakefile=tiny_snakefile(workdir)
    )
    return result.stdout


def snakemake(
    *args: str,
    workdir: Path = REPO,
    configfile: Path | None = None,
    check: bool = True,
    snakefile: Path = REPO / "Snakefile",
):
    command = [*SNAKEMAKE, "-s", str(snakefile), "-d", str(workdir), *args]
    if configfile is not None:
        command += ["--configfile", str(configfile)]
    # the jobs (`python -m mllm...`) import this tree's library, not the editable install's
    environment = {**os.environ, "PYTHONPATH": str(snakefile.parent)}
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=workdir, timeout=600, env=environment
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def planned_jobs(output: str) -> dict[str, int]:
    """Parse the job table of a dry-run: rule -> count."""
    table = output.split("Job stats:")[-1] if "Job stats:" in output else ""
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)
        if m.group(1) != "total"
    }


def test_dry_run_of_the_default_config_plans_the_whole_dag(tmp_path):
    result = snakemake("-n", "report", workdir=tmp_path, configfile=REPO / "config" / "config.yaml")
    jobs = planned_jobs(result.stdout)
    assert jobs == {
        "generate_demo_world": 1,
        "index_images": 3,  # the train, val and test image folders
        "build_tokenizer": 1,
        "warm_up_vision": 1,
        "build_base_model": 1,
        "build_chair_cache": 1,
        "preflight_sft": 2,  # the image-token budget before each training run
        "train_sft": 2,  # LoRA and full fine-tuning
        "preflight_preference": 1,
        "reference_logps": 1,  # scored once, shared by every preference run
        "train_preference": 3,  # dpo, dpo + NLL, nca at one beta
        "prepare_grounding": 1,
        "preflight_grounding": 1,
        "train_grounding": 1,
        "grounding_eval": 2,  # base and grounding, each job on all 8 dataset splits
        "yesno_accuracy": 7,  # every stage
        "build_pope": 1,  # the three settings' questions from the world's instances_val.json
        "pope_eval": 7,  # every stage, all three settings in one job
        "decode": 9,  # base × 3 strategies, every trained stage × sampling
        "chair": 9,
        "report": 1,
    }


def test_unknown_config_key_fails_before_any_job_naming_the_key(tmp_path):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["decoding"]["strategies"]["greedy"]["beam_width"] = 3
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "report", workdir=tmp_path, configfile=broken, check=False)
    assert result.returncode != 0
    assert "beam_width" in result.stdout + result.stderr


def test_on_policy_pairs_feed_the_reference_and_every_preference_run(tmp_path):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["preference"]["pairs"] = "on_policy"
    config["preference"]["on_policy"] = {"samples_per_image": 2, "chosen": ["sample", "edit"]}
    path = tmp_path / "on_policy.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "-p", "reference_logps", workdir=tmp_path, configfile=path)
    assert planned_jobs(result.stdout)["build_preference_pairs"] == 1
    assert "results/preference/pairs.json" in result.stdout


def test_on_policy_pairs_in_the_real_world_take_their_gt_from_coco_train2014(tmp_path):
    config = yaml.safe_load((REPO / "config" / "experiments" / "exercise.yaml").read_text())
    tiny = yaml.safe_load(TINY_CONFIG.read_text())
    config["real"]["preference"] = "data/preference_train.json"
    config["preference"] = {**tiny["preference"], "pairs": "on_policy"}
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "preference_train.json").write_text("[]")
    path = tmp_path / "real.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "build_preference_pairs", workdir=tmp_path, configfile=path)
    jobs = planned_jobs(result.stdout)
    # the prompts, and the COCO train2014 instances + captions as the world's train GT
    assert jobs["import_world_file"] == 3 and jobs["download_coco_annotations"] == 1
    assert "resources/downloads/coco/annotations/instances_train2014.json" in result.stdout


@pytest.mark.parametrize("imported", [False, True])
def test_the_real_world_builds_pope_from_its_instances_or_imports_the_published_files(
    tmp_path, imported
):
    config = yaml.safe_load((REPO / "config" / "experiments" / "exercise.yaml").read_text())
    if not imported:
        del config["real"]["pope"]
    path = tmp_path / "real.yaml"
    path.write_text(yaml.safe_dump(config))
    (tmp_path / "data").mkdir()
    for name in ("train.json", "test.json"):
        (tmp_path / "data" / name).write_text("[]")
    result = snakemake("-n", "results/pope/base/random.json", workdir=tmp_path, configfile=path)
    jobs = planned_jobs(result.stdout)
    if imported:
        assert jobs["download_pope"] == jobs["import_pope"] == 1 and "build_pope" not in jobs
    else:
        assert jobs["build_pope"] == 1 and "download_pope" not in jobs
        assert "resources/world/annotations/instances_val.json" in result.stdout


def test_lint_is_clean():
    result = snakemake("--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_tiny_end_to_end_run_writes_the_report(tiny_run):
    workdir, _ = tiny_run
    report = (workdir / "results" / "report" / "index.html").read_text()
    assert "CHAIRs" in report and "base · beam" in report and "Supervised fine-tuning" in report
    for stage in ("base", "sft"):
        yesno = json.loads((workdir / "results" / "yesno" / f"{stage}.json").read_text())
        assert yesno["n"] == 20 and 0 <= yesno["accuracy"] <= 1
    metrics = json.loads((workdir / "results" / "train" / "sft" / "metrics.json").read_text())
    assert metrics["global_step"] == 4 and "eval_loss_before" in metrics
    assert "Preference alignment" in report
    for stage in ("base", "grounding"):
        for name in ("refcoco_val", "refcocog_test"):
            grounding = json.loads((workdir / f"results/grounding/{stage}/{name}.json").read_text())
            assert grounding["n"] > 0 and 0 <= grounding["acc_at_0_5"] <= 1
            assert grounding["parse_failures"] <= grounding["n"]
    for stage in ("base", "sft", "grounding", "nca_beta0.1", "nca_beta0.5"):
        for setting in ("random", "popular", "adversarial"):
            pope = json.loads((workdir / f"results/pope/{stage}/{setting}.json").read_text())
            answers = (workdir / f"results/pope/{stage}/{setting}.answers.jsonl").read_text()
            assert pope["n"] == len(answers.splitlines()) > 0 and pope["n"] % 6 == 0
            assert 0 <= pope["accuracy"] <= 1 and 0 <= pope["unparseable"] <= pope["n"]
    assert 'id="pope"' in report and "neither yes nor no" in report
    assert "resources/world/pope/adversarial.jsonl" in report  # its integrity line
    assert "resources/world/objhal_bench.jsonl" in report and "sha256" in report
    summary = json.loads((workdir / "results/grounding/data/train.summary.json").read_text())
    assert summary["records"] > 0
    history = json.loads((workdir / "results/train/nca_beta0.1/trainer_state.json").read_text())[
        "log_history"
    ]
    assert any("rewards/margins" in entry for entry in history)
    for strategy in ("sampling", "greedy", "beam"):
        answers = (
            (workdir / "results" / "decode" / "base" / f"{strategy}.jsonl").read_text().splitlines()
        )
        assert len(answers) == 16
        assert set(json.loads(answers[0])) == {
            "question_id",
            "image_id",
            "question",
            "answer",
            "model",
            "strategy",
        }
        metrics = json.loads(
            (workdir / "results" / "chair" / "base" / f"{strategy}.json").read_text()
        )
        assert metrics["n_captions"] == 16 and 0 <= metrics["CHAIRi"] <= 100


@pytest.mark.slow
def test_after_a_complete_run_nothing_is_rescheduled(tiny_run):
    workdir, config = tiny_run
    result = snakemake(
        "-n", "report", workdir=workdir, configfile=config, snakefile=tiny_snakefile(workdir)
    )
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.slow
def test_changing_the_lora_rank_reruns_only_sft_and_what_depends_on_it(tiny_run):
    stdout = dry_run_changed(
        tiny_run, "rank4", lambda config: config["sft"]["sft"]["training"]["lora"].update(r=4)
    )
    assert planned_jobs(stdout) == {
        "train_sft": 1,
        "yesno_accuracy": 1,
        "pope_eval": 1,
        "decode": 1,
        "chair": 1,
        "report": 1,
    }
    assert "results/decode/sft/greedy.jsonl" in stdout


@pytest.mark.slow
def test_changing_one_beta_reruns_only_that_preference_run_not_the_reference(tiny_run):
    stdout = dry_run_changed(
        tiny_run, "beta", lambda config: config["preference"].update(betas=[0.1, 0.3])
    )
    jobs = planned_jobs(stdout)
    assert jobs == {
        "train_preference": 1,
        "yesno_accuracy": 1,
        "pope_eval": 1,
        "decode": 1,
        "chair": 1,
        "report": 1,
    }
    assert "results/models/nca_beta0.3" in stdout and "reference_logps" not in jobs


@pytest.mark.slow
def test_changing_the_grounding_lr_reruns_only_grounding_training_and_its_evaluations(tiny_run):
    stdout = dry_run_changed(
        tiny_run,
        "grounding_lr",
        lambda config: config["grounding"]["training"].update(learning_rate=0.001),
    )
    assert planned_jobs(stdout) == {
        "train_grounding": 1,
        "grounding_eval": 1,  # the grounding stage (both splits); base is not re-evaluated
        "yesno_accuracy": 1,
        "pope_eval": 1,
        "decode": 1,
        "chair": 1,
        "report": 1,
    }
    evaluated = re.findall(r"rule grounding_eval:.*?wildcards: stage=(\w+)", stdout, re.DOTALL)
    assert evaluated == ["grounding"]


@pytest.mark.slow
def test_changing_the_beam_width_reruns_only_beam_decoding_and_what_follows(tiny_run):
    stdout = dry_run_changed(
        tiny_run,
        "beam2",
        lambda config: config["decoding"]["strategies"]["beam"].update(num_beams=2),
    )
    assert planned_jobs(stdout) == {"decode": 1, "chair": 1, "report": 1}
    assert "results/decode/base/beam.jsonl" in stdout
    assert "results/decode/base/greedy.jsonl" not in stdout


@pytest.mark.slow
def test_replacing_one_benchmark_image_reruns_exactly_the_jobs_that_read_it(tiny_run):
    """A benchmark (val) image rewritten in place: the decodings, their CHAIR scores and the report
    (its thumbnails), nothing that trains; a touch alone, and putting it back, rerun nothing."""
    workdir, config = tiny_run
    image = sorted((workdir / "resources/world/images/val").glob("*.png"))[0]
    original = image.read_bytes()

    def dry_run() -> str:
        return snakemake(
            "-n", "report", workdir=workdir, configfile=config, snakefile=tiny_snakefile(workdir)
        ).stdout

    try:
        os.utime(image)  # a newer mtime, the same bytes
        assert planned_jobs(dry_run()) == {}
        with Image.open(image) as opened:
            ImageOps.invert(opened.convert("RGB")).save(image)
        stdout = dry_run()
        assert planned_jobs(stdout) == {"decode": 7, "chair": 7, "pope_eval": 5, "report": 1}
    finally:
        image.write_bytes(original)
    assert planned_jobs(dry_run()) == {}


def test_no_rule_asks_which_world_it_is_in():
    """The world boundary: only the Snakefile's include picks the world; rules read its table."""
    world_test = re.compile(
        r"IS_DEMO|IS_REAL|config\[.world.\]\s*[!=]=|world\s*[!=]=\s*.(demo|real)"
    )
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").rglob("*.smk"))]:
        assert not world_test.search(path.read_text()), path


# An edited library module -> the jobs that must rerun (tiny config: stages base, sft, grounding
# and the preference runs nca at beta 0.1 and 0.5; trained stages are decoded greedily only).
CODE_CHANGES = {
    # CHAIR: the GT cache, every CHAIR score and the report; no decoding, no training
    "mllm/eval/chair.py": {"build_chair_cache": 1, "chair": 7, "report": 1},
    # a preference loss: both preference runs and what evaluates them; not SFT, not the reference
    "mllm/preference/losses.py": {
        "train_preference": 2,
        "decode": 2,
        "chair": 2,
        "yesno_accuracy": 2,
        "pope_eval": 2,
        "report": 1,
    },
    # POPE's metrics: every stage's POPE job and the report; not the questions, no other metric
    "mllm/eval/pope.py": {"pope_eval": 5, "report": 1},
    # the report's page assembly: the report alone
    "mllm/report/page.py": {"report": 1},
    # a module no job runs (the report's headless-browser check is a test tool): nothing
    "mllm/report/browser.py": {},
}


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(CODE_CHANGES))
def test_editing_a_library_module_reruns_exactly_the_jobs_that_import_it(tiny_run, module):
    workdir, config = tiny_run
    path = workdir / "workflow" / module
    original = path.read_text()
    path.write_text(original + "\n# an edit\n")
    try:
        result = snakemake(
            "-n", "report", workdir=workdir, configfile=config, snakefile=tiny_snakefile(workdir)
        )
    finally:
        path.write_text(original)
    assert planned_jobs(result.stdout) == CODE_CHANGES[module]
    if not CODE_CHANGES[module]:
        assert "Nothing to be done" in result.stdout + result.stderr
