"""Set-up shared by every workflow job: logs to the rule's log file, CPU threads, quiet libraries."""

from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path

from mllm import JOB_ENVIRONMENT_VARIABLE


def start_job(log_path: str | os.PathLike | None, threads: int = 1) -> None:
    """Send stdout/stderr (tqdm bars included) and logging to ``log_path``; use ``threads`` CPU threads.

    Snakemake keeps the log of a failed job and names it in its error message, so everything a
    user needs to debug a failure must land there. ``log_path=None`` keeps stdout/stderr: a
    ``shell:`` rule has redirected them into the log already. Under torchrun a node's threads are
    split among its ranks, and only rank 0 logs below warnings (N copies of each line help no one).
    """
    end_import_pause()
    from mllm.distributed import is_main_process, local_world_size

    stream = sys.stderr
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the job
        sys.stdout = sys.stderr = stream
    logging.basicConfig(
        level=logging.INFO if is_main_process() else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=stream,
        force=True,
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(max(1, threads // local_world_size()))


def mark_started_jobs() -> None:
    """Called by the workflow in Snakemake's own process (rules/common.smk): every job it starts
    from now on pauses the garbage collector while it imports (mllm/__init__.py). This process is
    Snakemake, not a job (a SLURM job step's Snakemake inherits the variable), so its own
    collector runs."""
    end_import_pause()
    os.environ[JOB_ENVIRONMENT_VARIABLE] = "1"


def end_import_pause() -> None:
    """Resume the garbage collector that ``import mllm`` paused in a workflow job's process
    (mllm/__init__.py), and leave what the imports built out of its scans from now on (a job's
    modules live as long as the job). Nothing changes where the collector was not paused."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()
