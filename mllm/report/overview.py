"""The overview section: each configured stage, what it is, what was done with it and what its
jobs cost (Snakemake benchmark files), and the config that produced the report."""

from __future__ import annotations

import html
from collections.abc import Mapping

import yaml

from mllm.report.content import ReportInputs, shown_stages
from mllm.report.jobs import config_hash, duration, stage_costs
from mllm.report.tables import html_table


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
        mean = ", mean log-p" if spec.get("use_average_logp") else ""
        return (
            f"{spec['loss_type'].upper()}{nll}, β {spec['beta']}{mean}, "
            f"from {inputs.preference_start}"
        )
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
    pope = [setting for st, setting in inputs.pope if st == stage]
    if pope:
        done.append(f"POPE ({', '.join(pope)})")
    grounded = [key for key in inputs.grounding if key[0] == stage]
    if grounded:
        done.append(f"grounding ({len(grounded)} splits)")
    return "done: " + " · ".join(done)


def recipe_check(check: Mapping, config: Mapping) -> str:
    """What a bench/phenomena.py summary says of this run's recipe: how many phenomena held on
    how many seeds × thread counts, and whether this run's config is the one checked."""
    held = [p["name"] for p in check["phenomena"] if p["holds"]]
    failed = [p["name"] for p in check["phenomena"] if not p["holds"]]
    covered = (
        "This run's config is the one checked."
        if check["config_hash"] == config_hash(config)
        else f"This run's config (hash <code>{config_hash(config)}</code>) is not the one checked"
        f" (<code>{html.escape(check['config_hash'])}</code>): the check does not cover it."
    )
    failures = f" Not in every run: {html.escape('; '.join(failed))}." if failed else ""
    return (
        f"<p><b>Recipe check</b> (<code>bench/phenomena.py</code>, docs/phenomena.md):"
        f" {len(held)} of {len(check['phenomena'])} phenomena held in every one of"
        f" {check['runs']} runs, training seeds {check['seeds']} × threads"
        f" {check['threads']}.{failures} {covered}</p>"
    )


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
benchmark files of each stage's jobs (training, decoding, yes/no, POPE and grounding evaluation); the
time is summed over the jobs, the memory is the largest peak (RSS) among them. GPU memory is not
in these files.</p>
{html_table(["stage", "what", "status", "jobs", "wall time", "peak memory"], rows, numeric=[3, 4, 5])}
{job_table}
{"".join(recipe_check(check, inputs.config) for check in inputs.recipe_checks)}
<details><summary>The config that produced this report (hash <code>{config_hash(inputs.config)}</code>)</summary>
<pre>{html.escape(config)}</pre></details>"""
