"""What the machine running Snakemake lacks for the software deployment it was asked for.

The SLURM profile deploys every rule's `envs/mllm.yaml` with `--sdm conda`; without `conda` on
PATH, Snakemake stops mid-DAG with "conda: command not found". The rules check first and name
the fix: install conda, or run from a prebuilt virtual environment on the shared filesystem (no
deployment: `--sdm env-modules`, which loads nothing here since no rule names a module).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Collection

MIN_CONDA = "24.7.1"  # what Snakemake 9 requires
VENV_INSTEAD = (
    "or skip conda and run from a virtual environment on the shared filesystem that the compute "
    "nodes see at the same path: `python3.11 -m venv /shared/mllm-venv && "
    "/shared/mllm-venv/bin/pip install -e .`, then "
    "`/shared/mllm-venv/bin/snakemake --profile slurm --sdm env-modules report` "
    "(docs/cluster.md, 'Software deployment')"
)


def deployment_problem(
    methods: Collection[str], which: Callable[[str], str | None] = shutil.which
) -> str | None:
    """The message for the first missing prerequisite of ``methods`` (names of Snakemake's
    deployment methods: "conda", "apptainer", "env-modules"), or None."""
    if "conda" in methods and which("conda") is None:
        return (
            "--software-deployment-method conda (the slurm profile's setting) needs `conda` "
            f"(>= {MIN_CONDA}) on PATH, here and on the compute nodes, and the conda-forge "
            "channel reachable once to build envs/mllm.yaml; `conda` is not on PATH. Install "
            "Miniforge (https://github.com/conda-forge/miniforge) and `conda activate base`, "
            + VENV_INSTEAD
        )
    if "apptainer" in methods and not (which("apptainer") or which("singularity")):
        return (
            "--software-deployment-method apptainer needs `apptainer` (or `singularity`) on PATH; "
            "neither is. Ask your site for its module, " + VENV_INSTEAD
        )
    return None
