"""One trainer per checkpoint folder: an exclusive lock held for the whole training job.

Killing Snakemake does not kill the jobs it started. After ``snakemake --unlock`` and a rerun, a
second trainer would resume from the same checkpoints while the first still writes them: two
runs interleaved in one folder. The job's main process (torchrun rank 0; a job runs on one node)
takes ``flock`` on ``<checkpoint_dir>.lock`` before it looks at the checkpoints and holds it until
it has written its outputs and removed them; the other ranks of the same job take none, so they
never refuse each other, and they cannot train without rank 0 anyway. A second job refuses at
once, naming the holder's pid and host. The kernel drops the lock when its holder dies however
it dies, so a stale lock file never blocks anyone; its content only names the last holder.

The lock file sits beside the folder, not in it: a run that discards or finishes its checkpoints
deletes the folder, and a lock inside would go with it while still held. ``flock`` works across
the nodes of NFSv4 (emulated with POSIX locks); on Lustre it needs the ``flock`` mount option.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mllm.distributed import is_main_process


class CheckpointsInUse(RuntimeError):
    """Another live training job holds the checkpoint folder; the message names it."""


def lock_path(checkpoint_dir: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(checkpoint_dir).rstrip('/')}.lock")


@contextmanager
def exclusive_checkpoints(checkpoint_dir: str | os.PathLike, job: str) -> Iterator[None]:
    """Hold the lock of ``checkpoint_dir`` for the block (main process only); raise
    ``CheckpointsInUse`` naming the holder when another job has it."""
    if not is_main_process():
        yield
        return
    path = lock_path(checkpoint_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointsInUse(_refusal(checkpoint_dir, path)) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "job": job,
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(descriptor, 0)
        os.write(descriptor, (json.dumps(holder) + "\n").encode())
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _refusal(checkpoint_dir: str | os.PathLike, path: Path) -> str:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        holder = {}  # the holder is between taking the lock and writing its name
    pid, host = holder.get("pid", "?"), holder.get("host", "?")
    return (
        f"{checkpoint_dir} is in use by another training job: {holder.get('job', '?')} with pid "
        f"{pid} on host {host}, since {holder.get('since', '?')} (lock {path}). Two trainers on "
        f"one checkpoint folder would interleave their checkpoints. Killing Snakemake does not "
        f"stop its jobs: wait for that one to finish, or stop it (on {host}: kill {pid}; on SLURM: "
        f"scancel its job), then rerun."
    )
