"""What produced a report: code revision, package versions, hardware."""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("torch", "transformers", "peft", "tokenizers", "snakemake", "nltk")


def git_revision() -> str:
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
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


def collect_provenance(**extra: str) -> dict[str, str]:
    import torch

    return {
        **{key: str(value) for key, value in extra.items()},
        "git revision": git_revision(),
        **{f"{name} version": v for name, v in package_versions().items()},
        "python": platform.python_version(),
        "hardware": f"{platform.machine()}, {torch.get_num_threads()} CPU threads"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"),
    }
