"""How a job module starts on one process, one node (torchrun) or several nodes of a SLURM job.

A rule's shell command is ``{params.launch} MODULE JOB --threads N --spec JSON NAME=PATH ...``;
``launch_prefix`` renders ``{params.launch}`` from the job's node and GPU counts:

* 1 node, 0 or 1 GPU: ``python -m``;
* 1 node, G > 1 GPUs: ``python -m torch.distributed.run --standalone --nproc_per_node=G -m``;
* N > 1 nodes: ``python -m mllm.workflow.launch_command --nodes=N --nproc-per-node=G -m``.

In the last case this module runs in the SLURM job's batch step, on its first node (the rule's
``mpi`` resource tells the executor plugin's jobstep to run the command there, without its own
``srun``). It looks the allocation up with ``scontrol`` (the jobstep strips every ``SLURM_*``
variable but the job id), takes a free port on this node, the rendezvous head, and starts one
task per node::

    srun --jobid=J --nodes=N --ntasks=N --ntasks-per-node=1 --cpus-per-task=C --kill-on-bad-exit=1 \\
        python -m mllm.workflow.launch_command --node-task --nodes=N --nproc-per-node=G \\
        --rdzv-endpoint=HEAD:PORT --rdzv-id=J --head-node=HEAD_NODE -m MODULE JOB ...

and each task starts torchrun for its node::

    python -m torch.distributed.run --nnodes=N --nproc-per-node=G --rdzv-backend=c10d \\
        --rdzv-endpoint=HEAD:PORT --rdzv-id=J --local-addr=THIS_NODE_ADDR \\
        --rdzv-conf=is_host=true|false -m MODULE JOB ...

The rendezvous address of a node is its SLURM ``NodeAddr`` (the node name unless the site set
one), which is also what this node's processes announce (``--local-addr``); the head hosts the
rendezvous store (``is_host``), so no guess from host names is needed. Only the standard library:
the rules import this module to render the prefix.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MODULE = "mllm.workflow.launch_command"


class LaunchError(RuntimeError):
    """The job cannot be laid out over its allocation (the message says what is missing)."""


def job_resources(nodes: int, gpus_per_node: int) -> dict[str, int | str]:
    """The rule's SLURM resources for a job on ``nodes`` nodes with ``gpus_per_node`` GPUs each.

    One node: ``gpu`` alone (the plugin's ``--gpus=G``, one task; a local run can cap it). Several
    nodes: ``--nodes=N`` and one task per node (``tasks``, with ``mpi`` so the plugin's jobstep
    leaves the ``srun`` to this module); GPUs per node as ``gres`` (``--gres=gpu:G`` counts per
    node, ``--gpus`` would count for the whole job); ``tasks_per_gpu=0`` keeps the plugin from
    turning ``tasks`` into ``--ntasks-per-gpu`` on a GPU job.
    """
    if nodes < 1 or gpus_per_node < 0:
        raise ValueError(f"nodes must be >= 1 and GPUs >= 0, not {nodes} and {gpus_per_node}")
    if nodes == 1:
        return {"gpu": gpus_per_node}
    resources: dict[str, int | str] = {"nodes": nodes, "tasks": nodes, "mpi": "srun"}
    if gpus_per_node > 0:
        resources |= {"gres": f"gpu:{gpus_per_node}", "tasks_per_gpu": 0}
    return resources


def gpus_per_node(resources: Mapping[str, object]) -> int:
    """The GPUs per node of a job's resources (as ``job_resources`` writes them; ``gpu`` may have
    been capped by a local ``--resources gpu=``)."""
    gres = re.fullmatch(r"gpu(?::[\w.]+)?:(\d+)", str(resources.get("gres") or ""))
    if gres:
        return int(gres.group(1))
    return int(resources.get("gpu", 0) or 0)


def launch_prefix(python: str, nodes: int, gpus: int) -> str:
    """``{params.launch}``: the words before ``MODULE JOB ...`` (see the module docstring)."""
    if nodes > 1:
        return f"{python} -m {MODULE} --nodes={nodes} --nproc-per-node={max(gpus, 1)} -m"
    if gpus > 1:
        return f"{python} -m torch.distributed.run --standalone --nproc_per_node={gpus} -m"
    return f"{python} -m"


@dataclass(frozen=True)
class Allocation:
    """What ``scontrol show job`` says about a running job."""

    job_id: str
    nodes: tuple[str, ...]  # node names, in SLURM's order
    batch_host: str  # where the batch step (and so this module) runs
    cpus: int  # CPUs of the whole allocation

    @property
    def cpus_per_node(self) -> int:
        return max(1, self.cpus // len(self.nodes))


def _scontrol(*arguments: str) -> str:
    try:
        result = subprocess.run(
            ["scontrol", *arguments], capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError:
        raise LaunchError("scontrol is not installed: a multi-node job needs SLURM") from None
    if result.returncode != 0:
        raise LaunchError(f"scontrol {' '.join(arguments)} failed: {result.stderr.strip()}")
    return result.stdout


def _fields(record: str) -> dict[str, str]:
    """``Key=Value`` pairs of one ``scontrol show ... -o`` line (values without spaces)."""
    return dict(item.split("=", 1) for item in record.split() if "=" in item)


def allocation(job_id: str) -> Allocation:
    fields = _fields(_scontrol("show", "job", "-o", job_id))
    nodes = tuple(_scontrol("show", "hostnames", fields["NodeList"]).split())
    return Allocation(job_id, nodes, fields["BatchHost"], int(fields["NumCPUs"]))


def node_address(node: str) -> str:
    """The address SLURM reaches ``node`` at (``NodeAddr``, the node name unless set)."""
    return _fields(_scontrol("show", "node", "-o", node)).get("NodeAddr") or node


def free_port() -> int:
    """A TCP port free on this machine now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def srun_command(
    job: Allocation, nproc_per_node: int, endpoint: str, module_argv: Sequence[str], python: str
) -> list[str]:
    """The batch step's ``srun``: one task per node, each the ``--node-task`` of this module."""
    nodes = len(job.nodes)
    return [
        "srun",
        f"--jobid={job.job_id}",
        f"--nodes={nodes}",
        f"--ntasks={nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={job.cpus_per_node}",
        "--kill-on-bad-exit=1",  # one failed node ends the step instead of a hung rendezvous
        *(python, "-m", MODULE, "--node-task", f"--nodes={nodes}"),
        *(f"--nproc-per-node={nproc_per_node}", f"--rdzv-endpoint={endpoint}"),
        *(f"--rdzv-id={job.job_id}", f"--head-node={job.batch_host}", "-m", *module_argv),
    ]


def torchrun_command(
    *,
    python: str,
    nodes: int,
    nproc_per_node: int,
    endpoint: str,
    rdzv_id: str,
    local_addr: str,
    is_head: bool,
    module_argv: Sequence[str],
) -> list[str]:
    """One node's torchrun: ``nproc_per_node`` ranks joining the job's c10d rendezvous."""
    return [
        *(python, "-m", "torch.distributed.run"),
        f"--nnodes={nodes}",
        f"--nproc-per-node={nproc_per_node}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint}",
        f"--rdzv-id={rdzv_id}",
        f"--local-addr={local_addr}",
        f"--rdzv-conf=is_host={'true' if is_head else 'false'}",
        "-m",
        *module_argv,
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--nproc-per-node", type=int, required=True)
    parser.add_argument("--node-task", action="store_true", help="(internal) one node's task")
    parser.add_argument("--rdzv-endpoint", help="(node task) HEAD:PORT")
    parser.add_argument("--rdzv-id", help="(node task) the SLURM job id")
    parser.add_argument("--head-node", help="(node task) the head's SLURM node name")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """``[options] -m MODULE ARGS...``: everything after ``-m`` is the job module's, as with
    torchrun."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-m" not in argv or argv.index("-m") == len(argv) - 1:
        raise LaunchError("usage: python -m mllm.workflow.launch_command OPTIONS -m MODULE ...")
    split = argv.index("-m")
    args = _parser().parse_args(argv[:split])
    module_argv = argv[split + 1 :]
    if args.node_task:
        this_node = os.environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]
        command = torchrun_command(
            python=sys.executable,
            nodes=args.nodes,
            nproc_per_node=args.nproc_per_node,
            endpoint=args.rdzv_endpoint,
            rdzv_id=args.rdzv_id,
            local_addr=node_address(this_node),
            is_head=this_node == args.head_node,
            module_argv=module_argv,
        )
    else:
        job_id = os.environ.get("SLURM_JOB_ID")
        if not job_id:
            raise LaunchError(
                f"compute.train_nodes is {args.nodes}: this job must run inside a SLURM job "
                "(snakemake --profile slurm); SLURM_JOB_ID is not set"
            )
        job = allocation(job_id)
        if len(job.nodes) != args.nodes:
            raise LaunchError(
                f"SLURM job {job_id} holds {len(job.nodes)} node(s) ({','.join(job.nodes)}), "
                f"the rule asks for {args.nodes}"
            )
        endpoint = f"{node_address(job.batch_host)}:{free_port()}"
        command = srun_command(job, args.nproc_per_node, endpoint, module_argv, sys.executable)
    print(shlex.join(command), file=sys.stderr, flush=True)  # the job log says what ran
    os.execvp(command[0], command)


if __name__ == "__main__":
    try:
        main()
    except LaunchError as error:
        sys.exit(f"{MODULE}: {error}")
