"""The test cluster's profile: the repository's slurm/config.yaml with only the site facts and the
timings changed, so the real-cluster test runs the profile users run."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
REAL_PROFILE = REPO / "slurm" / "config.yaml"

# The one-node test cluster (tests/slurm/cluster.py) has partitions `cpu` (default) and `gpu`.
CPU_PARTITION = "cpu"
GPU_PARTITION = "gpu"


def real_profile() -> dict:
    return yaml.safe_load(REAL_PROFILE.read_text())


def cluster_profile(real: dict | None = None) -> dict:
    profile = dict(real if real is not None else real_profile())
    # No conda on test machines: jobs run in the test's own environment (--export=ALL passes it).
    profile.pop("software-deployment-method", None)
    profile.update(
        {
            "jobs": 4,
            "latency-wait": 5,
            # A failed job must stay failed for the failure test (the real profile retries once).
            "retries": 0,
            # No accounting daemon here: `sacct` exists but fails, and the plugin would wait for
            # it forever. squeue sees finished jobs for MinJobAge (set high by the cluster).
            "slurm-status-command": "squeue",
            "slurm-init-seconds-before-status-checks": 2,
            "seconds-between-status-checks": 2,
            # Keep the logs of successful jobs too, so the test can find one per job.
            "slurm-keep-successful-logs": True,
            # Site facts: the test cluster's partitions; no account (there is no database to
            # check one against, the plugin then submits without -A); sizes that fit the node.
            "default-resources": {
                "slurm_partition": CPU_PARTITION,
                "runtime": 30,
                "mem_mb": 1000,
            },
            "set-resources": {
                rule: {
                    "slurm_partition": GPU_PARTITION,
                    "cpus_per_gpu": 1,
                    "mem_mb": 1000,
                    "runtime": 30,
                }
                for rule in profile.get("set-resources", {})
            },
        }
    )
    return profile


def write_cluster_profile(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(cluster_profile(), sort_keys=False))
    return directory
