"""What a report shows (:class:`ReportInputs`, read by ``mllm.report.inputs``) and the helpers
its sections share: which stages and strategies there are, and how values become cells."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mllm.report.grounding import GroundingSplit
from mllm.report.integrity import BenchmarkFile
from mllm.report.jobs import JobCost
from mllm.report.stats import Estimate
from mllm.report.tables import html_table


@dataclass
class ReportInputs:
    chair: Mapping[tuple[str, str], Mapping]  # (stage, strategy) -> CHAIR metrics JSON
    stages: list[str] = field(default_factory=list)
    yesno: Mapping[str, Mapping] = field(default_factory=dict)  # stage -> yes/no metrics
    yesno_answers: Mapping[str, list] = field(default_factory=dict)  # stage -> answer rows
    training: Mapping[str, Mapping] = field(default_factory=dict)  # run -> {metrics, log_history}
    preference_runs: Mapping[str, Mapping] = field(default_factory=dict)  # run -> loss spec
    preference_start: str | None = None
    grounding: Mapping[tuple, GroundingSplit] = field(default_factory=dict)
    grounding_run: str | None = None  # the grounding SFT run among `training`, if configured
    grounding_image_folder: str | None = None
    pope: Mapping[tuple[str, str], Mapping] = field(
        default_factory=dict
    )  # (stage, setting) -> metrics
    pope_answers: Mapping[tuple[str, str], list] = field(default_factory=dict)  # -> answer rows
    # benchmark key (mllm.workflow.plan: Plan.benchmark_files) -> the file as the report saw it
    benchmark_files: Mapping[str, BenchmarkFile] = field(default_factory=dict)
    thumbnails: Mapping[int, str] = field(default_factory=dict)  # image_id -> data URI
    jobs: list[JobCost] = field(default_factory=list)
    config: Mapping = field(default_factory=dict)
    provenance: Mapping[str, str] = field(default_factory=dict)
    # conversion summaries of the world's data (an lmms-lab split's rows vs the standard split)
    data_notes: list[Mapping] = field(default_factory=list)
    # bench/phenomena.py summaries: which phenomena held over how many seeds × threads
    recipe_checks: list[Mapping] = field(default_factory=list)


# --- cells -----------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence], row_classes=None) -> str:
    """A table of plain values (escaped here); floats get one decimal."""
    return html_table(
        headers,
        [[plain(v) for v in row] for row in rows],
        row_classes,
    )


def plain(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) else html.escape(str(value))


def estimate_cell(estimate: Estimate, digits: int) -> tuple[str, str]:
    """(HTML cell, TSV text) of a value with its interval."""
    value, low, high = (f"{v:.{digits}f}" for v in (estimate.value, estimate.low, estimate.high))
    return f'{value} <span class="ci">[{low}, {high}]</span>', f"{value} [{low}, {high}]"


def png_img(png: bytes, alt: str) -> str:
    encoded = base64.b64encode(png).decode()
    return f'<img class="figure" alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


# --- what was evaluated ----------------------------------------------------------------------


def strategies(inputs: ReportInputs) -> list[str]:
    return list(dict.fromkeys(strategy for _, strategy in inputs.chair))


def shown_stages(inputs: ReportInputs) -> list[str]:
    """Configured stages that produced any result; a stage that was not configured never appears."""
    evaluated = {stage for stage, _ in inputs.chair} | set(inputs.yesno)
    evaluated |= {stage for stage, _, _ in inputs.grounding}
    evaluated |= {stage for stage, _ in inputs.pope}
    return [stage for stage in inputs.stages if stage in evaluated] + sorted(
        evaluated - set(inputs.stages)
    )


def chair_analyzers(inputs: ReportInputs) -> dict[str, Mapping]:
    """The text analyzers the CHAIR results were computed with: name -> its recorded info."""
    return {
        metrics.get("analyzer", {}).get("name", "?"): metrics.get("analyzer", {})
        for metrics in inputs.chair.values()
    }


def grounding_splits(inputs: ReportInputs) -> list[tuple[str, str]]:
    return sorted({(dataset, split) for _, dataset, split in inputs.grounding})
