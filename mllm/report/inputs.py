"""Reading the metric artifacts a report is built from (the `report` rule's inputs)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from mllm.records import read_json, read_jsonl
from mllm.report.content import ReportInputs
from mllm.report.grounding import read_grounding
from mllm.report.integrity import read_benchmark_files
from mllm.report.jobs import read_job_cost
from mllm.report.provenance import collect_provenance
from mllm.report.viewer import benchmark_thumbnails

PathLike = str | os.PathLike


def collect_inputs(
    *,
    chair: Mapping[tuple[str, str], PathLike],
    stages: Sequence[str],
    yesno: Sequence[PathLike] = (),
    training: Sequence[PathLike] = (),
    grounding: Sequence[PathLike] = (),
    grounding_run: str | None = None,
    grounding_image_folder: PathLike | None = None,
    pope: Sequence[PathLike] = (),
    benchmark_files: Mapping[str, PathLike] | None = None,
    world_provenance: Mapping[str, PathLike] | None = None,
    job_benchmarks: Mapping[PathLike, str] | None = None,
    benchmark: PathLike | None = None,
    image_folder: PathLike | None = None,
    preference_runs: Mapping[str, Mapping] | None = None,
    preference_start: str | None = None,
    config: Mapping | None = None,
    world: str = "",
    data_notes: Sequence[PathLike] = (),
    recipe_checks: Sequence[PathLike] = (),
) -> ReportInputs:
    """Everything the page shows, read from the files the workflow wrote.

    `yesno` are `results/yesno/{stage}.json` (answers beside them as `.answers.jsonl`), `training`
    are `results/train/{run}/metrics.json` (with `trainer_state.json` beside them), `grounding`
    the per-split metric JSONs (items beside them as `.jsonl`), `pope` the
    `results/pope/{stage}/{setting}.json` (answers beside them as `.answers.jsonl`).
    `benchmark_files` maps a benchmark key to its world file (Plan.benchmark_files) and
    `world_provenance` a world file to its download's provenance JSON, for the integrity lines. `data_notes` are the world's data
    conversion summaries (mllm.data.refcoco_parquet). `recipe_checks` are the world's checks of
    its recipe over training seeds × threads (bench/phenomena.py).
    """
    training_runs = {}
    for path in training:
        state = read_json(Path(path).with_name("trainer_state.json"))
        training_runs[Path(path).parent.name] = {
            "metrics": read_json(path),
            "log_history": state["log_history"],
        }
    yesno_answers = {}
    for path in yesno:
        answers = Path(path).with_name(Path(path).stem + ".answers.jsonl")
        if answers.exists():
            yesno_answers[Path(path).stem] = read_jsonl(answers)
    pope_metrics, pope_answers = {}, {}
    for path in pope:
        metrics = read_json(path)
        key = (metrics["stage"], metrics["setting"])
        pope_metrics[key] = metrics
        answers = Path(path).with_name(Path(path).stem + ".answers.jsonl")
        if answers.exists():
            pope_answers[key] = read_jsonl(answers)
    return ReportInputs(
        chair={run: read_json(path) for run, path in chair.items()},
        stages=list(stages),
        yesno={Path(path).stem: read_json(path) for path in yesno},
        yesno_answers=yesno_answers,
        training=training_runs,
        preference_runs=dict(preference_runs or {}),
        preference_start=preference_start,
        grounding=read_grounding(grounding),
        grounding_run=grounding_run,
        pope=pope_metrics,
        pope_answers=pope_answers,
        benchmark_files=read_benchmark_files(
            list((benchmark_files or {}).items()), world_provenance
        ),
        grounding_image_folder=None
        if grounding_image_folder is None
        else str(grounding_image_folder),
        thumbnails=benchmark_thumbnails(benchmark, image_folder) if benchmark else {},
        jobs=[read_job_cost(path, stage) for path, stage in (job_benchmarks or {}).items()],
        config=dict(config or {}),
        provenance=collect_provenance(world=world),
        data_notes=[read_json(path) for path in data_notes],
        recipe_checks=[read_json(path) for path in recipe_checks],
    )
