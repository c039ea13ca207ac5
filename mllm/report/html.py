"""The workflow's report: one self-contained HTML page (inline CSS and script, images embedded, no
network) built only from the metric artifacts, so it can be regenerated, diffed and shared. The
figures and the headline table are also written beside it for Snakemake's native report."""

from __future__ import annotations

import base64
import csv
import html
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mllm.atomic import atomic_directory, write_text
from mllm.eval.grounding import REFERENCE_ACCURACY
from mllm.report.grounding import GroundingSplit, grounding_section
from mllm.report.overview import JobCost, config_hash, duration, seeds, stage_costs
from mllm.report.plots import loss_curves_png, preference_curves_png
from mllm.report.stats import Estimate, chair_estimates, rate_estimate
from mllm.report.tables import html_table
from mllm.report.viewer import viewer_section

CHAIR_COLUMNS = ("CHAIRs", "CHAIRi", "Recall", "Len")
WITH_INTERVAL = ("CHAIRs", "CHAIRi")
YESNO = ("yes/no", "accuracy")


def _chair(strategy: str, values: Sequence) -> dict:
    return {(strategy, column): value for column, value in zip(CHAIR_COLUMNS, values, strict=True)}


# The exercise's and its forks' numbers on the real 8B model (EXERCISE_SPEC 4 and 6), placed in
# the headline columns they belong to: (strategy, metric) for CHAIR, YESNO for yes/no accuracy.
# The forks' grounding numbers (rows named here, by their REFERENCE_ACCURACY label) per split.
HEADLINE_REFERENCES = {
    "exercise target, base": _chair("sampling", (32.7, 8.5, 61.7, 126.0)),
    "exercise bar after preference": _chair("sampling", ("< 29.5", "< 7.8", "", "")),
    "[L] base": {
        **_chair("sampling", (29.7, 9.2, 62.3, 126.4)),
        **_chair("greedy", (26.3, 7.3, 60.5, 131.3)),
        **_chair("beam", (24.3, 6.9, 63.3, 135.6)),
        YESNO: "0.693–0.696",
    },
    "[L] LoRA SFT runs": {YESNO: "0.81–0.835"},
    "[L] full FT (lr 2e-6, batch 32, 100 steps)": {YESNO: "0.898"},
    "[L] SFT + NCA β .1": _chair("sampling", (24.3, 7.3, 62.6, 126.0)),
    "[Q0] DPO β .5": _chair("greedy", (18.0, 5.1, 54.9, 108.9)),
}
GROUNDING_REFERENCE_ROWS = {
    "[L] grounding SFT, 1000 grid": "[L] 1000 grid",
    "[Q0] grounding SFT, raw pixels": "[Q0] raw pixels",
}

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222;
  padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
nav a { margin-right: 0.8rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #eee; text-align: left; }
th.num, td.num { text-align: right; white-space: nowrap; }
td:first-child { white-space: nowrap; }
thead th { border-bottom: 1px solid #bbb; }
th.group { text-align: center; border-bottom: 1px solid #ddd; }
tr.reference td { color: #777; font-style: italic; }
.ci { color: #888; font-size: 0.8em; }
.hallucinated { background: #ffd6d6; color: #a00; font-weight: 600; border-radius: 3px; padding: 0 2px; }
.meta { color: #666; font-size: 0.9rem; }
code { background: #f4f4f4; padding: 0 3px; }
pre { background: #f7f7f7; padding: 0.6rem; overflow-x: auto; font-size: 0.85rem; }
figure img, img.figure { max-width: 100%; }
.viewer { max-height: 80vh; overflow-y: auto; border: 1px solid #ddd; padding: 0.5rem; }
.viewer-item { display: flex; align-items: flex-start; gap: 0.8rem; padding: 0.5rem 0; border-bottom: 1px solid #eee; }
.viewer-item img.thumb { width: 128px; height: auto; flex: none; image-rendering: pixelated; }
.viewer-caption { margin: 0.15rem 0; }
.viewer-caption .run { color: #555; font-size: 0.85rem; font-weight: 600; }
.examples { display: flex; flex-wrap: wrap; gap: 0.8rem; }
figure.box-example { margin: 0; width: 200px; font-size: 0.85rem; }
figure.box-example img { image-rendering: pixelated; }
"""


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
    thumbnails: Mapping[int, str] = field(default_factory=dict)  # image_id -> data URI
    jobs: list[JobCost] = field(default_factory=list)
    config: Mapping = field(default_factory=dict)
    provenance: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Report:
    """The page, and what the native Snakemake report shows beside it."""

    html: str
    figures: dict[str, bytes]  # file stem -> PNG
    headline: list[list[str]]  # TSV rows, plain text


# --- helpers ---------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence], row_classes=None) -> str:
    """A table of plain values (escaped here); floats get one decimal."""
    return html_table(
        headers,
        [[_plain(v) for v in row] for row in rows],
        row_classes,
    )


def _plain(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) else html.escape(str(value))


def _estimate(estimate: Estimate, digits: int) -> tuple[str, str]:
    """(HTML cell, TSV text) of a value with its interval."""
    value, low, high = (f"{v:.{digits}f}" for v in (estimate.value, estimate.low, estimate.high))
    return f'{value} <span class="ci">[{low}, {high}]</span>', f"{value} [{low}, {high}]"


def png_img(png: bytes, alt: str) -> str:
    encoded = base64.b64encode(png).decode()
    return f'<img class="figure" alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def strategies(inputs: ReportInputs) -> list[str]:
    return list(dict.fromkeys(strategy for _, strategy in inputs.chair))


def shown_stages(inputs: ReportInputs) -> list[str]:
    """Configured stages that produced any result; a stage that was not configured never appears."""
    evaluated = {stage for stage, _ in inputs.chair} | set(inputs.yesno)
    evaluated |= {stage for stage, _, _ in inputs.grounding}
    return [stage for stage in inputs.stages if stage in evaluated] + sorted(
        evaluated - set(inputs.stages)
    )


def grounding_splits(inputs: ReportInputs) -> list[tuple[str, str]]:
    return sorted({(dataset, split) for _, dataset, split in inputs.grounding})


# --- sections --------------------------------------------------------------------------------


def describe_stage(stage: str, inputs: ReportInputs) -> str:
    """What a stage is, from the config that defined it."""
    if stage == "base":
        return "base model" + (
            " (pre-trained in the demo world)"
            if any(j.job == "build_base_model" for j in inputs.jobs)
            else ""
        )
    if stage in inputs.preference_runs:
        spec = inputs.preference_runs[stage]
        nll = f" + {spec['nll_weight']}·NLL" if spec.get("nll_weight") else ""
        return f"{spec['loss_type'].upper()}{nll}, β {spec['beta']}, from {inputs.preference_start}"
    if stage == inputs.grounding_run:
        start = inputs.config.get("grounding", {}).get("start", "?")
        return f"grounding SFT (REC boxes) from {start}"
    sft = inputs.config.get("sft", {}).get(stage)
    if sft:
        kind = "LoRA SFT" if "lora" in sft.get("training", {}) else "full SFT"
        return f"{kind} from {sft['start']}"
    return ""


def stage_status(stage: str, inputs: ReportInputs) -> str:
    done = ["trained"] if stage in inputs.training else []
    chair = [s for st, s in inputs.chair if st == stage]
    if chair:
        done.append(f"CHAIR ({', '.join(chair)})")
    if stage in inputs.yesno:
        done.append("yes/no")
    grounded = [key for key in inputs.grounding if key[0] == stage]
    if grounded:
        done.append(f"grounding ({len(grounded)} splits)")
    return "done: " + " · ".join(done)


def overview_section(inputs: ReportInputs) -> str:
    stages = shown_stages(inputs)
    costs = stage_costs(inputs.jobs, stages)
    rows = []
    for stage in stages:
        cost = costs[stage]
        rss = cost["max_rss_mb"]
        rows.append(
            [
                f"<b>{html.escape(stage)}</b>",
                html.escape(describe_stage(stage, inputs)),
                html.escape(stage_status(stage, inputs)),
                str(len(cost["jobs"])),
                duration(cost["seconds"]) if cost["jobs"] else "–",
                "–" if rss is None else f"{rss:,.0f} MB",
            ]
        )
    jobs = [
        [
            html.escape(job.job),
            html.escape(job.stage or "shared"),
            duration(job.seconds),
            "–" if job.max_rss_mb is None else f"{job.max_rss_mb:,.0f} MB",
        ]
        for job in sorted(inputs.jobs, key=lambda j: j.job)
    ]
    total = sum(job.seconds for job in inputs.jobs)
    job_table = (
        f"<details><summary>All {len(jobs)} benchmarked jobs ({duration(total)} of wall time in"
        f" all)</summary>{html_table(['job', 'stage', 'wall time', 'peak memory (RSS)'], jobs, numeric=[2, 3])}"
        "</details>"
        if jobs
        else ""
    )
    config = yaml.safe_dump(dict(inputs.config), sort_keys=False, allow_unicode=True)
    return f"""<h2 id="overview">Overview</h2>
<p>The stages this run configured and evaluated. Wall time and peak memory come from Snakemake's
benchmark files of each stage's jobs (training, decoding, yes/no and grounding evaluation); the
time is summed over the jobs, the memory is the largest peak (RSS) among them. GPU memory is not
in these files.</p>
{html_table(["stage", "what", "status", "jobs", "wall time", "peak memory"], rows, numeric=[3, 4, 5])}
{job_table}
<details><summary>The config that produced this report (hash <code>{config_hash(inputs.config)}</code>)</summary>
<pre>{html.escape(config)}</pre></details>"""


def headline(inputs: ReportInputs) -> tuple[str, list[list[str]]]:
    """Stage × metric with intervals, reference rows beneath; also as plain rows for a TSV."""
    columns: list[tuple] = [(s, c) for s in strategies(inputs) for c in CHAIR_COLUMNS]
    groups = [(f"CHAIR, {s} decoding", len(CHAIR_COLUMNS)) for s in strategies(inputs)]
    if inputs.yesno:
        columns.append(YESNO)
        groups.append(("yes/no", 1))
    splits = grounding_splits(inputs)
    columns += [("grounding", dataset, split) for dataset, split in splits]
    if splits:
        groups.append(("grounding Acc@0.5", len(splits)))
    headers = [
        column[1] if column[0] != "grounding" else f"{column[1]} {column[2]}" for column in columns
    ]
    text_headers = [
        f"{column[1]} ({column[0]})" if column[0] != "grounding" else f"Acc@0.5 {header}"
        for column, header in zip(columns, headers, strict=True)
    ]

    html_rows, text_rows, classes = [], [], []
    for stage in shown_stages(inputs):
        cells = {column: ("–", "") for column in columns}
        for strategy in strategies(inputs):
            metrics = inputs.chair.get((stage, strategy))
            if not metrics:
                continue
            estimates = chair_estimates(metrics["per_caption"])
            for column in CHAIR_COLUMNS:
                cells[(strategy, column)] = (
                    _estimate(estimates[column], 1)
                    if column in WITH_INTERVAL
                    else (f"{metrics[column]:.1f}",) * 2
                )
        if stage in inputs.yesno:
            answers = inputs.yesno_answers.get(stage)
            cells[YESNO] = (
                _estimate(rate_estimate([a["prediction"] == a["target"] for a in answers]), 3)
                if answers
                else (f"{inputs.yesno[stage]['accuracy']:.3f}",) * 2
            )
        for dataset, split in splits:
            result = inputs.grounding.get((stage, dataset, split))
            if result is not None:
                cells[("grounding", dataset, split)] = (
                    _estimate(rate_estimate([item["hit"] for item in result.items]), 3)
                    if result.items
                    else (f"{result.metrics['acc_at_0_5']:.3f}",) * 2
                )
        html_rows.append([f"<b>{html.escape(stage)}</b>", *(cells[c][0] for c in columns)])
        text_rows.append([stage, *(cells[c][1] for c in columns)])
        classes.append("")

    references = {name: dict(values) for name, values in HEADLINE_REFERENCES.items()}
    for name, label in GROUNDING_REFERENCE_ROWS.items():
        references[name] = {
            ("grounding", d, s): f"{REFERENCE_ACCURACY[d, s][label]:.3f}"
            for d, s in splits
            if label in REFERENCE_ACCURACY.get((d, s), {})
        }
    for name, values in references.items():
        row = [values.get(column, "") for column in columns]
        if not any(v != "" for v in row):
            continue  # a reference for columns this run does not have
        shown = [_plain(v) for v in row]
        html_rows.append([html.escape(name), *shown])
        text_rows.append([f"reference: {name}", *(html.unescape(v) for v in shown)])
        classes.append("reference")

    page = f"""<h2 id="headline">Headline results</h2>
<p>Every evaluated stage × metric. CHAIRs / CHAIRi / Recall in percent (lower CHAIR is better),
Len: mean caption length in tokens; accuracies as fractions. Brackets: 95 % bootstrap intervals
(1000 resamples of captions, questions or referents, seeded). Grey rows: the exercise's numbers
and its forks' results on the real 8B model and real data (EXERCISE_SPEC §4, §6), for context:
the demo world is not those benchmarks.</p>
{html_table(["stage", *headers], html_rows, classes, groups=[("", 1), *groups])}"""
    return page, [["stage", *text_headers], *text_rows]


def sft_section(inputs: ReportInputs, figures: dict[str, bytes]) -> str:
    """Base vs each SFT run (eval loss, yes/no), and the loss curves of every supervised run,
    grounding SFT included (its eval loss is on the grounding validation split)."""
    supervised = {run: t for run, t in inputs.training.items() if run not in inputs.preference_runs}
    if not supervised:
        return ""
    sft_runs = {run: t for run, t in supervised.items() if run != inputs.grounding_run}
    rows = []
    base_eval = next((t["metrics"].get("eval_loss_before") for t in sft_runs.values()), None)
    for stage in ["base", *sft_runs] if sft_runs else []:
        metrics = sft_runs.get(stage, {}).get("metrics", {})
        yesno = inputs.yesno.get(stage, {})
        eval_loss = metrics.get("eval_loss", base_eval if stage == "base" else None)
        rows.append(
            [
                stage,
                "–" if eval_loss is None else f"{eval_loss:.3f}",
                "–" if not yesno else f"{yesno['accuracy']:.3f}",
                "–" if not yesno else f"{yesno['unparseable_rate']:.3f}",
                f"{yesno['yes_rate']:.3f}" if "yes_rate" in yesno else "–",
            ]
        )
    figures["sft_loss"] = loss_curves_png(
        {run: t["log_history"] for run, t in supervised.items()},
        "Supervised fine-tuning loss (SFT and grounding SFT)",
    )
    summary = (
        table(["stage", "eval loss", "yes/no acc.", "unparseable", "answers yes"], rows)
        if rows
        else ""
    )
    return f"""<h2 id="sft">Supervised fine-tuning</h2>
<p>Eval loss on the yes/no test set (the base row: the starting model, measured in the SFT job);
accuracy: greedy answers normalised to a leading yes/no, unparseable answers count as wrong.
Curves: train loss (line) and eval loss (markers) per run; a grounding run's eval loss is on its
validation referring expressions.</p>
{summary}
{png_img(figures["sft_loss"], "supervised fine-tuning train and eval loss")}"""


def preference_section(inputs: ReportInputs, figures: dict[str, bytes]) -> str:
    """Final rewards of every loss × β run and the loss / reward curves."""
    runs = [run for run in inputs.preference_runs if run in inputs.training]
    if not runs:
        return ""
    rows = []
    for run in runs:
        history = inputs.training[run]["log_history"]
        last = next((e for e in reversed(history) if "rewards/margins" in e), {})
        rows.append(
            [
                run,
                *(
                    "–" if key not in last else f"{last[key]:.3f}"
                    for key in (
                        "loss",
                        "rewards/chosen",
                        "rewards/rejected",
                        "rewards/margins",
                        "rewards/accuracies",
                    )
                ),
            ]
        )
    figures["preference"] = preference_curves_png(
        {run: inputs.training[run]["log_history"] for run in runs}
    )
    return f"""<h2 id="preference">Preference alignment</h2>
<p>Each run starts from <code>{html.escape(str(inputs.preference_start))}</code>, which is also the
reference model (its log-probs are scored once and cached). Rewards are β·(log π − log π_ref) of
the chosen and rejected answers; the margin is their difference, the accuracy the share of pairs
with a positive margin. Values of the last logged step.</p>
{table(["run", "loss", "rewards/chosen", "rewards/rejected", "margin", "reward acc."], rows)}
{png_img(figures["preference"], "preference loss and rewards")}"""


def provenance_section(inputs: ReportInputs) -> str:
    analyzers = {}
    for metrics in inputs.chair.values():
        info = metrics.get("analyzer", {})
        analyzers[info.get("name", "?")] = info
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
    for name, info in analyzers.items():
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


def build_report(inputs: ReportInputs) -> Report:
    figures: dict[str, bytes] = {}
    headline_html, headline_rows = headline(inputs)
    sections = [
        overview_section(inputs),
        headline_html,
        sft_section(inputs, figures),
        preference_section(inputs, figures),
        grounding_section(inputs.grounding, inputs.grounding_image_folder),
        viewer_section(inputs.chair, inputs.thumbnails),
        provenance_section(inputs),
    ]
    links = [
        (anchor, title)
        for anchor, title in (
            ("overview", "Overview"),
            ("headline", "Headline"),
            ("sft", "SFT"),
            ("preference", "Preference"),
            ("grounding", "Grounding"),
            ("viewer", "Hallucination viewer"),
            ("provenance", "Provenance"),
        )
        if any(f'id="{anchor}"' in section for section in sections)
    ]
    nav = "".join(f'<a href="#{anchor}">{title}</a>' for anchor, title in links)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mllm-workflow report</title>
<link rel="icon" href="data:,"><style>{STYLE}</style></head>
<body>
<h1>mllm-workflow report</h1>
<p class="meta">config <code>{config_hash(inputs.config)}</code> ·
revision <code>{html.escape(inputs.provenance.get("git revision", "?"))}</code></p>
<nav>{nav}</nav>
{"".join(section for section in sections if section)}
</body></html>
"""
    return Report(html=page, figures=figures, headline=headline_rows)


def render(inputs: ReportInputs) -> str:
    return build_report(inputs).html


def write_report(
    inputs: ReportInputs,
    page: str | os.PathLike,
    figures: str | os.PathLike,
    headline_tsv: str | os.PathLike,
) -> None:
    """The page, its figures as PNG files in `figures` (a directory) and the headline table."""
    report = build_report(inputs)
    with atomic_directory(figures) as scratch:
        for name, png in report.figures.items():
            Path(scratch, f"{name}.png").write_bytes(png)
    buffer = io.StringIO()
    csv.writer(buffer, delimiter="\t", lineterminator="\n").writerows(report.headline)
    write_text(headline_tsv, buffer.getvalue())
    write_text(page, report.html)
