"""The docs that are generated from the workflow stay in step with it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def rule_graph(dot: str) -> tuple[set[str], set[tuple[str, str]]]:
    """(rule names, edges between rule names) of a `snakemake --rulegraph dot` output; node ids
    and line order carry no meaning."""
    labels = dict(re.findall(r"^\s*(\d+)\[label = \"(\w+)\"", dot, re.MULTILINE))
    edges = re.findall(r"^\s*(\d+) -> (\d+)", dot, re.MULTILINE)
    return set(labels.values()), {(labels[a], labels[b]) for a, b in edges}


def test_the_committed_rule_graph_is_the_workflows(tmp_path):
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(tmp_path),
    ]
    command += ["--configfile", str(REPO / "config" / "config.yaml")]
    command += ["--rulegraph", "dot", "--", "report"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    fresh = rule_graph(result.stdout)
    assert fresh[0], result.stdout + result.stderr
    committed = rule_graph((DOCS / "rulegraph.dot").read_text())
    assert committed == fresh, "docs/rulegraph.dot is stale: run `make rulegraph`"
    picture = (DOCS / "rulegraph.svg").read_text()
    missing = [rule for rule in sorted(fresh[0]) if f">{rule}</text>" not in picture]
    assert not missing, f"docs/rulegraph.svg lacks {missing}: run `make rulegraph`"


def test_the_readme_links_only_to_files_that_exist():
    readme = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#]+)\)", readme)
    assert targets
    missing = [t for t in targets if not t.startswith("http") and not (REPO / t).exists()]
    assert not missing, missing
