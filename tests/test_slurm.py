"""SLURM execution: the slurm/ and local/ profiles, the sbatch lines they produce, and real runs on a
one-node SLURM cluster started on loopback (tests/slurm/cluster.py).

Fast tests render the sbatch line of every job of a dry-run under the real slurm/config.yaml with
the executor plugin's own code (tests/slurm/render_sbatch.py). The slow tests need slurm-wlm and
munge (.ci/install_slurm.sh) and root; without them they skip, except under CI=true, where they
fail instead: CI must prove the workflow runs through sbatch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.slurm.cluster import SlurmCluster, SlurmUnavailable
from tests.slurm.profile import GPU_PARTITION, real_profile, write_cluster_profile

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "workflow" / "config.yaml"
EXERCISE_CONFIG = REPO / "config" / "experiments" / "exercise.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
IN_CI = os.environ.get("CI") == "true"
RUN_TIMEOUT_S = 900  # one snakemake run on the test cluster; killed (SIGKILL) after this

# Which config key sizes the GPU count of each GPU rule (rules: resources: gpu=config["compute"][..]).
TRAINING_RULES = {"warm_up_vision", "build_base_model", "train_sft", "train_grounding"}
TRAINING_RULES |= {"train_preference"}
EVALUATION_RULES = {"decode", "reference_logps", "grounding_eval", "yesno_accuracy", "pope_eval"}
EVALUATION_RULES |= {"build_preference_pairs"}
# The launcher jobs that span compute.train_nodes nodes (torchrun on every node).
MULTI_NODE_RULES = {"build_base_model", "train_sft", "train_grounding", "train_preference"}
MULTI_NODE_RULES |= {"reference_logps"}
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


def write_config(
    path: Path, base: Path = TINY_CONFIG, *, pope: bool = True, slim: bool = False, **compute
) -> Path:
    """``base`` on ``compute``; ``slim``: every rule of its DAG still runs, but where several jobs
    run one rule on other values only one does (one decoding strategy, one beta, grounding
    evaluated on its own stage): what a run through sbatch must prove, in fewer jobs."""
    config = yaml.safe_load(base.read_text())
    config["compute"].update(compute)
    if not pope:
        config.pop("pope")
    if slim:
        strategies = config["decoding"]["strategies"]
        config["decoding"]["strategies"] = {"greedy": strategies["greedy"]}
        config["preference"]["betas"] = config["preference"]["betas"][:1]
        config["grounding"]["eval_stages"] = ["grounding"]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def job_stats(output: str) -> dict[str, int]:
    """The first "Job stats" table Snakemake prints: rule -> number of jobs planned."""
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0] if "Job stats:" in output else ""
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)
        if m.group(1) != "total"
    }


# --- sbatch lines under the real profile (no cluster) -------------------------------------------


def minutes(runtime) -> int:
    """The plugin's -t value for a profile runtime (minutes, or "24h"/"90m" strings)."""
    if isinstance(runtime, int):
        return runtime
    value, unit = re.fullmatch(r"(\d+)\s*([hm])", runtime).groups()
    return int(value) * (60 if unit == "h" else 1)


def flag(sbatch: str, name: str) -> str | None:
    """The value of one sbatch flag (`--gpus=4`, `--mem 8000` and `-p 'x'` spellings)."""
    match = re.search(rf"(?:^|\s){re.escape(name)}[= ]'?([^\s']+)'?", sbatch)
    return match.group(1) if match else None


def render_sbatch(tmp_path: Path, configfile: Path) -> list[dict]:
    out = tmp_path / "sbatch.jsonl"
    command = [
        sys.executable,
        "-m",
        "tests.slurm.render_sbatch",
        str(out),
        *("-s", str(REPO / "Snakefile"), "-d", str(tmp_path)),
        # By name, from the repository root: what `snakemake --profile slurm report` resolves.
        *("--profile", "slurm", "-n", "report", "--configfile", str(configfile)),
        # Dry-runs default to --cores 1, which caps every job's threads; real submissions have no
        # cap (cores are not set for remote executors).
        *("--cores", "1024"),
        # conda is not needed to render a line (and not installed on test machines).
        *("--sdm", "env-modules"),
    ]
    for _ in range(5):
        result = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=300, env=_pythonpath_env()
        )
        output = result.stdout + result.stderr
        # Files a user provides by hand (the real experiments' data/): empty stand-ins suffice,
        # a dry-run never reads them.
        missing = _user_provided_inputs(output, tmp_path) if result.returncode else []
        if not missing:
            break
        for path in missing:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        out.unlink(missing_ok=True)
    assert result.returncode == 0, output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    errors = [f"{r['rule']}: {r['error']}" for r in records if "error" in r]
    assert not errors, "the plugin refuses to submit:\n" + "\n".join(errors)
    return records


def _user_provided_inputs(output: str, workdir: Path) -> list[Path]:
    if "MissingInputException" not in output or "affected files:" not in output:
        return []
    listed = output.split("affected files:", 1)[1].splitlines()[1:]
    files = []
    for line in listed:
        if not line.startswith(" " * 8) or not line.strip():
            break
        path = Path(line.strip())
        if not path.is_absolute():
            files.append(workdir / path)
    return files


def _pythonpath_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def test_slurm_profile_parses_and_keeps_site_facts_out_of_the_rules():
    profile = real_profile()
    assert profile["executor"] == "slurm"
    assert profile["slurm-logdir"] == "logs/slurm"
    assert profile["software-deployment-method"] == "conda"
    assert profile["rerun-incomplete"] is True
    # The placeholders a user must fill are visibly placeholders.
    assert "CHANGE_ME" in profile["default-resources"]["slurm_account"]
    assert "CHANGE_ME" in profile["default-resources"]["slurm_partition"]
    gpu_rules = TRAINING_RULES | EVALUATION_RULES
    assert set(profile["set-resources"]) == gpu_rules
    for rule, resources in profile["set-resources"].items():
        assert {"slurm_partition", "cpus_per_gpu", "mem_mb", "runtime"} <= set(resources), rule
        # The GPU count belongs to the experiment (config compute.*_gpus: it sets the global batch
        # size); a `gpu`/`gres` here would silently override it on the cluster only.
        assert not {"gpu", "gres", "gpus"} & set(resources), rule
        # On GPU jobs `tasks` becomes --ntasks-per-gpu: one rank per GPU, not what our launchers
        # inside the job expect.
        assert not {"tasks", "tasks_per_gpu"} & set(resources), rule
    # No rule may set site facts itself: partitions, accounts, GPU models, sbatch flags.
    for rule_file in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        site_fact = re.search(r"\bslurm_\w+|\bgpu_model\b|\bconstraint\s*=", rule_file.read_text())
        assert not site_fact, f"{rule_file.name} sets {site_fact.group()}: put it in slurm/"


def test_slurm_extra_holds_no_flag_the_plugin_manages():
    from snakemake_executor_plugin_slurm.validation import get_forbidden_slurm_options

    profile = real_profile()
    blocks = [profile.get("default-resources", {}), *profile.get("set-resources", {}).values()]
    for resources in blocks:
        extra = str(resources.get("slurm_extra", ""))
        for pattern, what in get_forbidden_slurm_options().items():
            assert not re.search(pattern, extra), f"slurm_extra sets the {what}: {extra}"


def assert_sbatch_lines(records: list[dict], compute: dict) -> None:
    """GPU rules: GPU partition, --gpus from the experiment config, --cpus-per-gpu, --mem and -t
    from the profile. CPU rules: default partition and account, one task, cpus from threads."""
    profile = real_profile()
    defaults, per_rule = profile["default-resources"], profile["set-resources"]
    nodes = compute.get("train_nodes", 1)
    for record in records:
        rule, sbatch = record["rule"], record["sbatch"]
        assert flag(sbatch, "-A") == defaults["slurm_account"], sbatch
        if nodes > 1 and rule in MULTI_NODE_RULES:
            gpus = compute["train_gpus" if rule in TRAINING_RULES else "eval_gpus"]
            wanted = per_rule[rule]
            # N nodes, one task each, G GPUs on every node (--gres counts per node; --gpus
            # would count for the whole job), CPUs and memory per GPU / per node from the profile.
            assert flag(sbatch, "--nodes") == str(nodes), sbatch
            assert flag(sbatch, "--ntasks") == str(nodes), sbatch
            assert flag(sbatch, "--gres") == f"gpu:{gpus}", sbatch
            assert "--gpus" not in sbatch and "--ntasks-per-gpu" not in sbatch, sbatch
            assert flag(sbatch, "--cpus-per-gpu") == str(wanted["cpus_per_gpu"]), sbatch
            assert flag(sbatch, "-p") == wanted["slurm_partition"], sbatch
            assert flag(sbatch, "--mem") == str(wanted["mem_mb"]), sbatch
            continue
        if rule in per_rule:
            wanted = per_rule[rule]
            if rule in TRAINING_RULES:
                gpus = compute["train_gpus"]
            else:
                assert rule in EVALUATION_RULES, f"{rule}: add it to TRAINING_/EVALUATION_RULES"
                gpus = compute["eval_gpus"]
            assert flag(sbatch, "-p") == wanted["slurm_partition"], sbatch
            assert flag(sbatch, "--gpus") == str(gpus), sbatch
            assert flag(sbatch, "--cpus-per-gpu") == str(wanted["cpus_per_gpu"]), sbatch
            assert flag(sbatch, "--mem") == str(wanted["mem_mb"]), sbatch
            assert flag(sbatch, "-t") == str(minutes(wanted["runtime"])), sbatch
            assert "--ntasks" not in sbatch and "--cpus-per-task" not in sbatch, sbatch
            assert "--gres" not in sbatch and "--nodes" not in sbatch, sbatch
        else:
            # A GPU rule without set-resources would queue on the CPU partition.
            assert "--gpus" not in sbatch and "--gres" not in sbatch, (
                f"rule {rule} asks for a GPU but slurm/config.yaml has no set-resources for it "
                "(partition, cpus_per_gpu, mem_mb, runtime)"
            )
            assert flag(sbatch, "-p") == defaults["slurm_partition"], sbatch
            assert flag(sbatch, "-t") == str(minutes(defaults["runtime"])), sbatch
            assert flag(sbatch, "--ntasks") == "1", sbatch
            assert flag(sbatch, "--cpus-per-task") == str(record["threads"]), sbatch
            assert flag(sbatch, "--mem") is not None, sbatch


def test_sbatch_lines_of_the_demo_dag_under_the_real_profile(tmp_path):
    # Distinct counts, so a rule reading the wrong compute key shows.
    compute = {"threads": 6, "train_gpus": 4, "eval_gpus": 2}
    config = write_config(tmp_path / "config.yaml", **compute)
    rendered = render_sbatch(tmp_path, config)
    records = [r for r in rendered if not r["local"]]
    assert {"warm_up_vision", "build_base_model", "decode", "yesno_accuracy"} <= {
        r["rule"] for r in records
    }
    assert {r["rule"] for r in rendered if r["local"]} == {"report", "chair", "index_images"}
    assert_sbatch_lines(records, compute)


def test_sbatch_lines_of_a_two_node_experiment(tmp_path):
    """compute.train_nodes: 2 puts training and reference_logps on 2 nodes, one task each; the
    other GPU rules stay on one node."""
    compute = {"threads": 6, "train_gpus": 4, "eval_gpus": 2, "train_nodes": 2}
    config = write_config(tmp_path / "config.yaml", **compute)
    records = [r for r in render_sbatch(tmp_path, config) if not r["local"]]
    assert {r["rule"] for r in records} >= {"build_base_model", "train_sft", "reference_logps"}
    assert_sbatch_lines(records, compute)


def test_two_node_jobs_start_the_multi_node_launcher(tmp_path):
    """Each multi-node job's shell command starts mllm.workflow.launch_command (srun, then torchrun
    per node) with the node count and the GPUs per node; the one-node jobs keep their launch."""
    config = write_config(tmp_path / "config.yaml", train_gpus=4, eval_gpus=2, train_nodes=2)
    result = subprocess.run(
        [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "-p", "report"]
        + ["--configfile", str(config), "--cores", "8"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    launch = r" -m mllm\.workflow\.launch_command --nodes=2 --nproc-per-node=(\d) -m (\S+ \w+) "
    per_node = {job: int(gpus) for gpus, job in re.findall(launch, result.stdout)}
    assert per_node == {
        "mllm.demo.base_model build_base_model": 4,
        "mllm.train.sft train_sft": 4,  # also train_grounding's job
        "mllm.preference.reference build_reference_logps": 2,
        "mllm.preference.train train_preference": 4,
    }, result.stdout[-3000:]
    assert "--standalone" not in result.stdout


def test_sbatch_lines_of_the_exercise_experiment(tmp_path):
    """The real-model experiment (8B): training on compute.train_gpus, evaluation on eval_gpus."""
    compute = yaml.safe_load(EXERCISE_CONFIG.read_text())["compute"]
    records = [r for r in render_sbatch(tmp_path, EXERCISE_CONFIG) if not r["local"]]
    assert "decode" in {r["rule"] for r in records}
    assert_sbatch_lines(records, compute)


def test_set_resources_for_a_rule_the_workflow_lacks_is_harmless(tmp_path):
    """slurm/config.yaml configures stages still to come; Snakemake must ignore unknown rules."""
    profile = real_profile()
    profile["set-resources"]["no_such_rule"] = {"runtime": 5, "mem_mb": 1}
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    dry_run(tmp_path, TINY_CONFIG, "--profile", str(tmp_path / "profile"), "--sdm", "env-modules")


def test_local_profile_parses_and_caps_gpus(tmp_path):
    config = write_config(tmp_path / "config.yaml", train_gpus=8, eval_gpus=8)
    profile = yaml.safe_load((REPO / "local" / "config.yaml").read_text())
    cap = int(dict(item.split("=") for item in profile["resources"])["gpu"])
    result = subprocess.run(
        [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(tmp_path)]
        + ["--profile", "local", "-n", "report", "--configfile", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    gpus = {int(v) for v in re.findall(r"resources: .*?\bgpu=(\d+)", result.stdout)}
    assert gpus == {cap}, result.stdout


def test_the_test_runs_status_checks_stay_at_the_profile_interval(monkeypatch):
    """tests/slurm/snakemake_main.py: whatever wait the plugin's check chose, the next check
    comes after the profile's seconds-between-status-checks; the jobs it yields are untouched."""
    import asyncio
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm import Executor

    from tests.slurm import snakemake_main

    async def backing_off(self, active_jobs):
        self.next_seconds_between_status_checks += 10  # the plugin, when no job finished
        for job in active_jobs:
            yield job

    monkeypatch.setattr(snakemake_main, "_check_active_jobs", backing_off)
    settings = SimpleNamespace(seconds_between_status_checks=2)
    executor = SimpleNamespace(
        next_seconds_between_status_checks=2,
        workflow=SimpleNamespace(remote_execution_settings=settings),
    )

    async def check(jobs):
        return [job async for job in snakemake_main.check_active_jobs_capped(executor, jobs)]

    assert asyncio.run(check(["a", "b"])) == ["a", "b"]
    assert executor.next_seconds_between_status_checks == 2
    assert Executor.check_active_jobs is snakemake_main.check_active_jobs_capped


# --- a real cluster ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node cluster (partitions cpu + gpu, two fake GPUs) for this module; always stopped."""
    try:
        # MinJobAge far above a test run: squeue is the status command and must keep seeing
        # finished jobs until the end.
        cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"), gpus=2, min_job_age=3600)
        cluster.start()
    except SlurmUnavailable as error:
        if IN_CI:
            pytest.fail(f"CI=true, but no SLURM cluster could be started: {error}")
        pytest.skip(f"no SLURM cluster: {error}")
    try:
        yield cluster
    finally:
        cluster.stop()


def run_on_cluster(workdir: Path, *args: str, snakefile: Path = REPO / "Snakefile"):
    """One snakemake run through sbatch, killed after RUN_TIMEOUT_S (its jobs are cancelled when the
    cluster stops). Returns (result, output, seconds). Snakemake's command line with the plugin's
    status checks kept at the test profile's interval (tests/slurm/snakemake_main.py); this
    checkout first on PYTHONPATH, which sbatch --export=ALL hands to every job."""
    command = [
        *("timeout", "-s", "KILL", str(RUN_TIMEOUT_S)),
        *(sys.executable, "-m", "tests.slurm.snakemake_main"),
        *("-s", str(snakefile), "-d", str(workdir)),
        *args,  # before --configfile, which would take targets for more config files
        *("--profile", str(workdir / "profile"), "--configfile", str(workdir / "config.yaml")),
    ]
    start = time.monotonic()
    result = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, env=_pythonpath_env()
    )
    seconds = time.monotonic() - start
    output = result.stdout + result.stderr
    (workdir / f"snakemake-{int(time.time() * 1000)}.out").write_text(output)
    assert result.returncode != 137, f"killed after {RUN_TIMEOUT_S} s:\n{output[-5000:]}"
    return result, output, seconds


def dry_run(workdir: Path, configfile: Path, *args: str) -> str:
    """The output of a dry-run of `report` under ``configfile`` (and ``args``) in ``workdir``."""
    result = subprocess.run(
        [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n", "report", *args]
        + ["--configfile", str(configfile)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def slurm_jobs() -> dict[str, dict]:
    """Every job the cluster still knows (MinJobAge): id -> state, partition, tres, comment."""
    listing = subprocess.run(
        [
            *("squeue", "--states=all", "--noheader"),
            "-O",
            "JobID:20,State:20,Partition:20,tres-per-job:30,Comment:200",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    jobs = {}
    for line in listing.splitlines():
        job_id, state, partition, tres, comment = line.split(None, 4)
        jobs[job_id] = dict(state=state, partition=partition, tres=tres, comment=comment.strip())
    return jobs


@pytest.fixture(scope="module")
def cluster_run(cluster, tmp_path_factory):
    """The tiny DAG to `report` through sbatch, GPU rules on (fake) GPUs."""
    workdir = tmp_path_factory.mktemp("slurm-run")
    # POPE's jobs are the tiny run's (tests/test_workflow.py); here they would only add CI time.
    write_config(workdir / "config.yaml", pope=False, slim=True, train_gpus=1, eval_gpus=1)
    write_cluster_profile(workdir / "profile")
    result, output, seconds = run_on_cluster(workdir, "report")
    print(f"\nreal-SLURM run of the tiny DAG: {seconds:.0f} s")
    return workdir, result, output, seconds


@pytest.mark.slow
def test_the_tiny_dag_runs_to_report_through_sbatch(cluster_run):
    workdir, result, output, _ = cluster_run
    assert result.returncode == 0, output[-8000:]
    assert (workdir / "results" / "report" / "index.html").exists()

    planned = job_stats(output)
    # The slim config drops jobs, never a rule: every rule of the tiny DAG ran.
    full = write_config(workdir / "full.yaml", pope=False, train_gpus=1, eval_gpus=1)
    assert set(planned) == set(job_stats(dry_run(workdir / "full-dag", full))), planned
    local = set(re.findall(r"^localrule (\w+):$", output, re.MULTILINE))
    # The report and the bookkeeping rules run beside Snakemake (their rules say why).
    assert local == {"report", "chair", "index_images"}, local
    remote = {rule: n for rule, n in planned.items() if rule not in local}
    submitted = SUBMITTED.findall(output)
    # Every other job went through sbatch, each once.
    assert len(submitted) == sum(remote.values()), output[-8000:]
    jobs = slurm_jobs()
    by_rule: dict[str, list[str]] = {}
    for _, slurm_id, log in submitted:
        job = jobs[slurm_id]
        assert job["state"] == "COMPLETED", (slurm_id, job)
        rule = re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", job["comment"]).group(1)
        by_rule.setdefault(rule, []).append(slurm_id)
        # The plugin's per-job log: logs/slurm/rule_<rule>/<wildcards>/<slurm id>.log
        assert Path(log).is_file() and Path(log).name == f"{slurm_id}.log", log
        assert (workdir / "logs" / "slurm" / f"rule_{rule}") in Path(log).parents
    assert {rule: len(ids) for rule, ids in by_rule.items()} == remote
    # GPU rules ran in the GPU partition holding a GPU; the others in the default partition.
    gpu_rules = set(real_profile()["set-resources"])
    for rule, ids in by_rule.items():
        for slurm_id in ids:
            job = jobs[slurm_id]
            if rule in gpu_rules:
                assert job["partition"] == GPU_PARTITION and "gpu:1" in job["tres"], (rule, job)
            else:
                assert job["partition"] != GPU_PARTITION and "gpu" not in job["tres"], (rule, job)


@pytest.mark.slow
def test_after_the_cluster_run_nothing_is_rescheduled(cluster_run):
    workdir, result, output, _ = cluster_run
    assert result.returncode == 0, output[-8000:]
    again, output, _ = run_on_cluster(workdir, "-n", "report")
    assert again.returncode == 0 and "Nothing to be done" in output, output[-4000:]


FLAKY_RULES = """
include: "{snakefile}"


rule flaky:
    input:
        WORLD_FILES["benchmark"],
    output:
        "results/flaky/done.txt",
    log:
        "logs/flaky.log",
    shell:
        "if [ ! -e fixed ]; then echo 'injected failure: ./fixed is missing' > {{log}}; exit 3; fi; "
        "touch {{output}} && echo fixed > {{log}}"


rule after_flaky:
    input:
        "results/flaky/done.txt",
    output:
        "results/flaky/after.txt",
    shell:
        "touch {{output}}"
"""


@pytest.mark.slow
def test_a_failed_job_names_its_log_and_a_rerun_resumes_where_it_failed(cluster, tmp_path):
    """The real workflow plus one rule that fails until the file `fixed` exists: keep-going
    finishes the independent branch, the error names the job's logs, and after the fix only the
    failed job and what depends on it run."""
    workdir = tmp_path
    # The wrapper Snakefile includes the real one unchanged (rules/common.smk finds the library
    # beside its own folder, not beside the wrapper).
    snakefile = workdir / "Snakefile"
    snakefile.write_text(FLAKY_RULES.format(snakefile=REPO / "Snakefile"))
    write_config(workdir / "config.yaml")
    write_cluster_profile(workdir / "profile")
    targets = ("results/chair/gt_cache.json", "results/flaky/after.txt")

    failed, output, _ = run_on_cluster(workdir, *targets, snakefile=snakefile)
    assert failed.returncode != 0, output[-8000:]
    assert "Error in rule flaky:" in output, output[-8000:]
    error = output.split("Error in rule flaky:", 1)[1].split("external_jobid", 1)[0]
    # The error names both logs: the rule's own and the SLURM job's (the jobstep's output).
    assert "logs/flaky.log" in error, error
    assert "injected failure" in (workdir / "logs" / "flaky.log").read_text()
    flaky_log = re.search(r"\S*logs/slurm/rule_flaky/\S*?(\d+)\.log", error)
    assert flaky_log, f"the SLURM log of the failed job is not named:\n{error}"
    assert Path(flaky_log.group(0)).is_file()
    assert slurm_jobs()[flaky_log.group(1)]["state"] == "FAILED"
    # keep-going: the branch that does not depend on the failure was finished
    assert (workdir / "results" / "chair" / "gt_cache.json").exists()
    assert not (workdir / "results" / "flaky" / "after.txt").exists()
    first = {slurm_id for _, slurm_id, _ in SUBMITTED.findall(output)}
    assert len(first) == 3, output[-8000:]  # generate_demo_world, build_chair_cache, flaky

    (workdir / "fixed").touch()
    plan, output, _ = run_on_cluster(workdir, "-n", *targets, snakefile=snakefile)
    assert job_stats(output) == {"flaky": 1, "after_flaky": 1}, output[-4000:]

    fixed, output, _ = run_on_cluster(workdir, *targets, snakefile=snakefile)
    assert fixed.returncode == 0, output[-8000:]
    assert job_stats(output) == {"flaky": 1, "after_flaky": 1}, output[-4000:]
    second = {slurm_id for _, slurm_id, _ in SUBMITTED.findall(output)}
    assert len(second) == 2 and not second & first, output[-4000:]
    assert (workdir / "results" / "flaky" / "after.txt").exists()


# --- software deployment -------------------------------------------------------------------------


def test_deployment_problem_names_what_is_missing_and_the_venv_alternative():
    from mllm.workflow.deployment import deployment_problem

    nothing = lambda name: None  # noqa: E731 (a PATH without any tool)
    conda = deployment_problem({"conda"}, which=nothing)
    assert "`conda` is not on PATH" in conda and "--sdm env-modules" in conda
    assert "Miniforge" in conda and "24.7.1" in conda
    assert "apptainer" in deployment_problem({"apptainer"}, which=nothing)
    assert deployment_problem({"conda"}, which=lambda name: f"/opt/bin/{name}") is None
    assert deployment_problem({"env-modules"}, which=nothing) is None
    assert deployment_problem(set(), which=nothing) is None


def test_the_slurm_profile_without_conda_says_what_to_do(tmp_path):
    """`snakemake --profile slurm -n report` on a login node without conda stops before the DAG
    with the fix (install conda, or a prebuilt venv with --sdm env-modules), not with
    "conda: command not found" mid-way."""
    # PATH without any directory holding a conda
    path = [d for d in os.environ["PATH"].split(os.pathsep) if not shutil.which("conda", path=d)]
    env = dict(os.environ, PATH=os.pathsep.join(path))
    command = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(tmp_path / "work")]
    command += ["--profile", "slurm", "-n", "report", "--configfile", str(TINY_CONFIG)]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "`conda` is not on PATH" in output and "--sdm env-modules" in output, output[-3000:]
    assert "command not found" not in output
    # ... and the venv alternative it names passes the same dry-run.
    venv = subprocess.run(
        [*command, "--sdm", "env-modules"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert venv.returncode == 0, venv.stdout[-3000:] + venv.stderr[-3000:]


def test_the_conda_env_file_installs_this_repository_on_its_python():
    """What can be checked of envs/mllm.yaml without a conda channel: it installs this checkout
    (`-e ..` relative to the file) on the python pyproject.toml asks for."""
    env = yaml.safe_load((REPO / "envs" / "mllm.yaml").read_text())
    dependencies = env["dependencies"]
    python = next(d for d in dependencies if isinstance(d, str) and d.startswith("python="))
    requires = re.search(r'requires-python\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text())
    from packaging.specifiers import SpecifierSet

    assert python.split("=", 1)[1] + ".0" in SpecifierSet(requires.group(1)), (python, requires)
    pip = next(d["pip"] for d in dependencies if isinstance(d, dict) and "pip" in d)
    assert pip == ["-e .."] and (REPO / "envs" / ".." / "pyproject.toml").is_file()
    assert env["channels"][0] == "conda-forge"
