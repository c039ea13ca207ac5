"""Multi-node launch (mllm.workflow.launch_command): the SLURM resources of a job on N nodes, the
prefix the rules put before a job module, and the exact srun / torchrun command lines it runs in
a job, with `scontrol` answered by a stand-in on PATH."""

from __future__ import annotations

import shlex
import socket
import stat
import sys
from pathlib import Path

import pytest

from mllm.workflow import launch_command
from mllm.workflow.launch_command import (
    LaunchError,
    gpus_per_node,
    job_resources,
    launch_prefix,
)

# A 2-node job, 16 CPUs in all, its batch step on n07; n08 is reached at a NodeAddr of its own.
FAKE_SCONTROL = """#!/bin/sh
case "$1 $2" in
  "show job") echo "JobId=$4 JobName=x NodeList=n[07-08] BatchHost=n07 NumNodes=2 NumCPUs=16 NumTasks=2" ;;
  "show hostnames") [ "$3" = "n[07-08]" ] && printf 'n07\\nn08\\n' ;;
  "show node") [ "$4" = n08 ] && echo "NodeName=n08 Arch=x NodeAddr=10.0.0.8 NodeHostName=n08" \\
               || echo "NodeName=$4 Arch=x NodeAddr=$4 NodeHostName=$4" ;;
  *) echo "unexpected: $*" >&2; exit 1 ;;
esac
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """scontrol answering for job 4242; os.execvp records the command instead of running it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(FAKE_SCONTROL)
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    executed: list[list[str]] = []
    monkeypatch.setattr(launch_command.os, "execvp", lambda file, argv: executed.append(argv))
    return executed


def test_one_node_keeps_the_gpu_resource_and_several_nodes_ask_per_node():
    assert job_resources(1, 4) == {"gpu": 4}
    assert job_resources(1, 0) == {"gpu": 0}
    assert job_resources(2, 4) == {
        "nodes": 2,
        "tasks": 2,
        "mpi": "srun",
        "gres": "gpu:4",
        "tasks_per_gpu": 0,
    }
    assert job_resources(3, 0) == {"nodes": 3, "tasks": 3, "mpi": "srun"}  # CPU nodes
    with pytest.raises(ValueError):
        job_resources(0, 1)


def test_gpus_per_node_reads_gpu_or_gres():
    assert gpus_per_node({"gpu": 3}) == 3
    assert gpus_per_node(job_resources(2, 4)) == 4
    assert gpus_per_node({"gres": "gpu:h100:8", "nodes": 2}) == 8
    assert gpus_per_node({}) == 0


def test_launch_prefix_by_nodes_and_gpus():
    assert launch_prefix("py", 1, 0) == "py -m"
    assert launch_prefix("py", 1, 1) == "py -m"
    assert launch_prefix("py", 1, 4) == (
        "py -m torch.distributed.run --standalone --nproc_per_node=4 -m"
    )
    assert launch_prefix("py", 2, 4) == (
        "py -m mllm.workflow.launch_command --nodes=2 --nproc-per-node=4 -m"
    )
    assert launch_prefix("py", 2, 0).endswith("--nodes=2 --nproc-per-node=1 -m")


def test_batch_step_starts_one_task_per_node_with_a_free_port_on_the_head(fake_slurm, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    job = ["mllm.train.sft", "train_sft", "--threads", "8", "--spec", "{}", "model_dir=out"]
    launch_command.main(["--nodes=2", "--nproc-per-node=4", "-m", *job])
    (srun,) = fake_slurm
    endpoint = next(a for a in srun if a.startswith("--rdzv-endpoint="))
    host, port = endpoint.split("=", 1)[1].split(":")
    assert host == "n07" and 1024 <= int(port) <= 65535
    with socket.socket() as sock:  # the port was free here (the batch host)
        sock.bind(("", int(port)))
    assert srun == [
        "srun",
        "--jobid=4242",
        "--nodes=2",
        "--ntasks=2",
        "--ntasks-per-node=1",
        "--cpus-per-task=8",  # 16 CPUs over 2 nodes
        "--kill-on-bad-exit=1",
        *(sys.executable, "-m", "mllm.workflow.launch_command", "--node-task", "--nodes=2"),
        *("--nproc-per-node=4", endpoint, "--rdzv-id=4242", "--head-node=n07", "-m", *job),
    ]


@pytest.mark.parametrize(
    ("node", "address", "is_head"), [("n07", "n07", "true"), ("n08", "10.0.0.8", "false")]
)
def test_each_node_task_starts_torchrun_for_its_node(
    fake_slurm, monkeypatch, node, address, is_head
):
    monkeypatch.setenv("SLURMD_NODENAME", node)
    job = ["mllm.preference.reference", "build_reference_logps", "--threads", "8"]
    launch_command.main(
        ["--node-task", "--nodes=2", "--nproc-per-node=4", "--rdzv-endpoint=n07:29517"]
        + ["--rdzv-id=4242", "--head-node=n07", "-m", *job]
    )
    assert fake_slurm == [
        [
            *(sys.executable, "-m", "torch.distributed.run"),
            *("--nnodes=2", "--nproc-per-node=4", "--rdzv-backend=c10d"),
            *("--rdzv-endpoint=n07:29517", "--rdzv-id=4242", f"--local-addr={address}"),
            f"--rdzv-conf=is_host={is_head}",
            *("-m", *job),
        ]
    ]


def test_outside_a_slurm_job_it_says_so(fake_slurm, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(LaunchError, match="must run inside a SLURM job"):
        launch_command.main(["--nodes=2", "--nproc-per-node=1", "-m", "mllm.train.sft", "x"])
    assert fake_slurm == []


def test_an_allocation_of_other_size_is_refused(fake_slurm, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    with pytest.raises(LaunchError, match="holds 2 node"):
        launch_command.main(["--nodes=3", "--nproc-per-node=1", "-m", "mllm.train.sft", "x"])


def test_without_scontrol_it_says_slurm_is_needed(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LaunchError, match="scontrol is not installed"):
        launch_command.allocation("1")


def test_the_rendered_lines_are_shell_words(fake_slurm, monkeypatch):
    """The job log shows the command as one shell line that re-parses to the same words."""
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    launch_command.main(["--nodes=2", "--nproc-per-node=1", "-m", "m", "--spec", '{"a": 1}'])
    (srun,) = fake_slurm
    assert shlex.split(shlex.join(srun)) == srun
    assert Path(srun[7]).name.startswith("python")


def test_batch_geometry_counts_nodes_and_the_global_batch(monkeypatch):
    from mllm.distributed import batch_geometry

    monkeypatch.setenv("WORLD_SIZE", "8")  # 2 nodes × 4 ranks (torchrun's environment)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert batch_geometry(3, 2) == {"world_size": 8, "nodes": 2, "global_batch_size": 48}
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert batch_geometry(3, 2) == {"world_size": 1, "nodes": 1, "global_batch_size": 6}
