"""A training job on two SLURM nodes (compute.train_nodes: 2) through sbatch, on a two-node test
cluster started on this one machine (tests/slurm/cluster.py TwoNodeCluster: one slurmd per
network namespace). The job's srun starts one torchrun per node; its 2 × 2 CPU ranks (gloo) must
write one model and the loss curve of the same job on one node with 4 ranks.

Its own module: the one-node cluster of tests/test_slurm.py holds the machine's cluster lock for
that module's lifetime. Needs root, slurm-wlm, munge, iproute2 (.ci/install_slurm.sh); skips
without them, except under CI=true.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.slurm.cluster import SlurmUnavailable, TwoNodeCluster
from tests.slurm.profile import write_cluster_profile
from tests.test_slurm import IN_CI, REPO, SUBMITTED, run_on_cluster, slurm_jobs, write_config

TARGET = "resources/models/base"  # build_base_model: a training job of the demo world
STATE = Path("results/train/base/trainer_state.json")


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    try:
        cluster = TwoNodeCluster(tmp_path_factory.mktemp("slurm2"), gpus=2, min_job_age=3600)
        cluster.start()
    except SlurmUnavailable as error:
        if IN_CI:
            pytest.fail(f"CI=true, but the two-node SLURM cluster could not start: {error}")
        pytest.skip(f"no two-node SLURM cluster: {error}")
    try:
        yield cluster
    finally:
        cluster.stop()


def losses(state_path: Path) -> list[tuple[int, float]]:
    history = json.loads(state_path.read_text())["log_history"]
    return [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]


@pytest.mark.slow
def test_a_two_node_training_job_equals_the_one_node_run(two_nodes, tmp_path, monkeypatch):
    workdir = tmp_path / "two-nodes"
    workdir.mkdir()
    write_config(workdir / "config.yaml", threads=1, train_gpus=2, eval_gpus=1, train_nodes=2)
    write_cluster_profile(workdir / "profile")
    # sbatch --export=ALL hands this to every job: the library of this checkout, and the network
    # interface each node namespace has (gloo would pick the host's own).
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", TwoNodeCluster.INTERFACE)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result, output, seconds = run_on_cluster(workdir, TARGET)
    print(f"\ntwo-node SLURM run to {TARGET}: {seconds:.0f} s")
    assert result.returncode == 0, output[-8000:]

    # The training job held both nodes, one task each, two (fake) GPUs per node.
    (job_id,) = [
        slurm_id for _, slurm_id, log in SUBMITTED.findall(output) if "build_base_model" in log
    ]
    job = slurm_jobs()[job_id]
    assert job["state"] == "COMPLETED", job
    details = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True
    ).stdout
    assert "NumNodes=2 " in details and "NodeList=n[1-2]" in details, details
    log = (workdir / "logs" / "build_base_model.log").read_text(errors="replace")
    torchruns = re.findall(r"^\S+ -m torch\.distributed\.run (.*)$", log, re.MULTILINE)
    assert len(torchruns) == 2, log[-4000:]  # one per node
    assert all("--nnodes=2 --nproc-per-node=2 --rdzv-backend=c10d" in line for line in torchruns)
    # one node hosts the rendezvous, at its own address
    assert sorted("--rdzv-conf=is_host=true" in line for line in torchruns) == [False, True]
    metrics = json.loads((workdir / "results/train/base/metrics.json").read_text())
    assert (metrics["world_size"], metrics["nodes"]) == (4, 2)
    assert metrics["global_batch_size"] == 4 * 8  # per_device_batch_size 8 of the tiny config
    assert (workdir / TARGET / "model.safetensors").is_file()

    # The same job on one node with 4 ranks, from the same inputs: the same loss curve.
    one_node = tmp_path / "one-node"
    for path in ("resources/world", "results/tokenizer", "results/models/vision_warmup"):
        (one_node / path).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-r", str(workdir / path), str(one_node / path)], check=True)
    (one_node / STATE).parent.mkdir(parents=True)
    srun = next(line for line in log.splitlines() if line.startswith("srun "))
    job_words = shlex.split(srun)
    job_words = job_words[job_words.index("-m", job_words.index("--head-node=n1")) :]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("GLOO_SOCKET_IFNAME")  # the host has no node-namespace interface
    single = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
        + job_words,
        cwd=one_node,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-5000:]
    two, one = losses(workdir / STATE), losses(one_node / STATE)
    assert len(two) >= 3 and [s for s, _ in two] == [s for s, _ in one]
    assert [loss for _, loss in two] == pytest.approx([loss for _, loss in one], rel=1e-5)
