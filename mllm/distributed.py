"""Ranks of a job launched by torchrun (``--nproc_per_node=N``): one process per GPU, all running
the same code. Training gets its process group from the HF Trainer; jobs without a Trainer
(reference log-prob scoring) use ``process_group`` here. A plain ``python`` launch is rank 0 of 1,
so the same code runs unchanged in a single process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist


def rank() -> int:
    return int(os.environ.get("RANK", 0))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def local_world_size() -> int:
    """Ranks on this node (torchrun's ``--nproc-per-node``)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", 1))


def node_count() -> int:
    """Nodes the job spans (``compute.train_nodes``): every node runs the same number of ranks."""
    return max(1, world_size() // local_world_size())


def batch_geometry(per_device_batch_size: int, gradient_accumulation_steps: int) -> dict[str, int]:
    """What a training run's metrics record of its layout: the node and rank counts set the global
    batch (samples per optimizer step), so results are only comparable with it."""
    return {
        "world_size": world_size(),
        "nodes": node_count(),
        "global_batch_size": per_device_batch_size * gradient_accumulation_steps * world_size(),
    }


def is_main_process() -> bool:
    """Rank 0: the one process that logs, and writes a job's outputs."""
    return rank() == 0


def device() -> torch.device:
    """This rank's GPU (``LOCAL_RANK``), or the CPU on a machine without one."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


@contextmanager
def process_group() -> Iterator[None]:
    """A gloo process group among torchrun's ranks for the block (nothing in a single process).

    gloo even on GPU nodes: these jobs only exchange small CPU results once, and gloo needs no
    device pinning.
    """
    if world_size() == 1 or dist.is_initialized():
        yield
        return
    dist.init_process_group("gloo")
    try:
        yield
        dist.barrier()  # no rank closes its connections while a peer may still be using them
    finally:
        dist.destroy_process_group()


def gather_to_main(value: Any) -> list[Any] | None:
    """Every rank's ``value`` (picklable), in rank order, on rank 0; ``None`` on the other ranks."""
    if not dist.is_initialized():
        return [value]
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(value, gathered, dst=0)
    return gathered
