"""What ran and what it cost: Snakemake benchmark files per job, grouped by stage, and the config
that produced the run (canonical JSON, hashed, so two reports can be compared at a glance)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JobCost:
    """One job's Snakemake benchmark record: wall time (s) and peak resident memory (MB)."""

    job: str  # the benchmark path below benchmarks/, without .tsv: "decode/base/greedy"
    stage: str  # "" for jobs every stage shares (world, tokenizer, CHAIR cache)
    seconds: float
    max_rss_mb: float | None


def read_job_cost(path: str | os.PathLike, stage: str = "") -> JobCost:
    """A Snakemake benchmark TSV (columns s, h:m:s, max_rss, ...); with `repeat` several rows, the
    slowest is kept. max_rss is "NA" where the platform could not measure it."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows:
        raise ValueError(f"{path}: empty benchmark file")
    row = max(rows, key=lambda r: float(r["s"]))
    try:
        rss = float(row["max_rss"])
    except (KeyError, ValueError):
        rss = None
    parts = Path(path).with_suffix("").parts
    job = "/".join(parts[parts.index("benchmarks") + 1 :] if "benchmarks" in parts else parts)
    return JobCost(job=job, stage=stage, seconds=float(row["s"]), max_rss_mb=rss)


def stage_costs(jobs: list[JobCost], stages: list[str]) -> dict[str, dict]:
    """Per stage: its jobs, their summed wall time and the largest peak memory among them."""
    summary = {}
    for stage in stages:
        own = [job for job in jobs if job.stage == stage]
        peaks = [job.max_rss_mb for job in own if job.max_rss_mb is not None]
        summary[stage] = {
            "jobs": [job.job for job in own],
            "seconds": sum(job.seconds for job in own),
            "max_rss_mb": max(peaks) if peaks else None,
        }
    return summary


def canonical_json(config: Mapping) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: Mapping) -> str:
    """Short SHA-256 of the canonical config: equal configs, equal hashes, whatever the key order."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:12]


def seeds(config: Mapping, prefix: str = "") -> dict[str, int]:
    """Every `seed` in the config by its dotted path ("sft.sft.training.seed" -> 0)."""
    found = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if key == "seed" and not isinstance(value, Mapping):
            found[path] = value
        elif isinstance(value, Mapping):
            found.update(seeds(value, f"{path}."))
    return found


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{seconds:.1f} s"
