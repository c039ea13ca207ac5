"""What produced a report: code revision, package versions, hardware, seeds and the CHAIR text
analyzer; collected when the report is built and shown in its provenance section."""

from __future__ import annotations

import html
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from mllm.report.content import ReportInputs, chair_analyzers
from mllm.report.jobs import config_hash, seeds
from mllm.report.tables import html_table

PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "tokenizers",
    "snakemake",
    "nltk",
    "textblob",
    "numpy",
    "matplotlib",
)
CODE = Path(__file__).resolve().parent  # the library's own checkout, whatever the working dir


def git_revision() -> str:
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=CODE,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=CODE,
        )
        return revision.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def collect_provenance(**extra: str) -> dict[str, str]:
    """The machine that rendered the report; training ran on the machines of its jobs (on a
    cluster, see the benchmark files and SLURM logs), which this cannot see."""
    import torch

    memory = memory_gib()
    gpus = (
        ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        or "no GPU"
    )
    return {
        **{key: str(value) for key, value in extra.items()},
        "git revision": git_revision(),
        **{f"{name} version": v for name, v in package_versions().items()},
        "python": platform.python_version(),
        "hardware (report job)": f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} CPUs"
        + (f", {memory:.0f} GiB RAM" if memory else "")
        + f", {gpus}",
    }


def provenance_section(inputs: ReportInputs) -> str:
    rows = [["config hash", html.escape(config_hash(inputs.config))]]
    rows += [[html.escape(k), html.escape(str(v))] for k, v in inputs.provenance.items()]
    found = seeds(inputs.config)
    if found:
        rows.append(
            [
                "seeds",
                "<br>".join(f"{html.escape(k)} = {html.escape(str(v))}" for k, v in found.items()),
            ]
        )
    for name, info in chair_analyzers(inputs).items():
        details = "; ".join(f"{k}: {v}" for k, v in info.items() if k not in ("name", "versions"))
        versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
        rows.append(
            [
                "CHAIR text analyzer",
                f"<code>{html.escape(name)}</code> {html.escape(details)}"
                + (f" ({html.escape(versions)})" if versions else ""),
            ]
        )
    return f'<h2 id="provenance">Provenance</h2>{html_table(["item", "value"], rows, numeric=[])}'
