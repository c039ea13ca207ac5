"""A workflow job's start: the garbage collector paused while it imports, resumed by start_job."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mllm import JOB_ENVIRONMENT_VARIABLE

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import gc
import mllm
from mllm.runtime import start_job
paused = not gc.isenabled()
start_job(None, 1)
print(paused, gc.isenabled())
"""


@pytest.mark.parametrize(("flag", "paused"), [("1", True), (None, False)])
def test_a_job_process_imports_with_the_collector_paused_and_start_job_resumes_it(flag, paused):
    environment = {k: v for k, v in os.environ.items() if k != JOB_ENVIRONMENT_VARIABLE}
    if flag is not None:
        environment[JOB_ENVIRONMENT_VARIABLE] = flag
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=environment, check=True
    )
    assert result.stdout.split() == [str(paused), "True"]


def calls(path: Path, name: str) -> bool:
    tree = ast.parse(path.read_text())
    return any(
        isinstance(node, ast.Call) and getattr(node.func, "id", None) == name
        for node in ast.walk(tree)
    )


def test_every_job_calls_start_job():
    """Else a job's collector would stay paused for its whole run. ``script:`` adapters call it
    themselves; ``shell:`` jobs are job modules run through mllm.launch.main, which calls it."""
    scripts = sorted((REPO / "workflow_scripts").glob("*.py"))
    assert scripts and [s.name for s in scripts if not calls(s, "start_job")] == []
    assert calls(REPO / "mllm" / "launch.py", "start_job")
    rules = "\n".join(p.read_text() for p in (REPO / "rules").rglob("*.smk"))
    modules = set(re.findall(r"\{params\.launch\} (mllm[\w.]+) ", rules))
    assert modules, "no job module found in the rules"
    for module in sorted(modules):
        source = REPO / (module.replace(".", "/") + ".py")
        assert calls(source, "main"), f"{module} does not end in mllm.launch.main"


def test_snakemake_marks_the_jobs_it_starts_and_keeps_its_own_collector_running():
    """A SLURM job step's Snakemake inherits the variable, so its `import mllm` pauses the
    collector; marking its jobs resumes it there."""
    probe = "import gc, os, mllm.runtime as r; r.mark_started_jobs(); "
    probe += f"print(gc.isenabled(), os.environ[{JOB_ENVIRONMENT_VARIABLE!r}])"
    environment = {**os.environ, JOB_ENVIRONMENT_VARIABLE: "1"}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=environment, check=True
    )
    assert result.stdout.split() == ["True", "1"]
