"""The POPE section: every stage × negative-sampling setting with bootstrap intervals, the answers
the official rule reads as yes by default, a plot of accuracy and yes-ratio, and the question
files' integrity lines."""

from __future__ import annotations

import html
import io
from collections.abc import Mapping

from mllm.report.content import ReportInputs, estimate_cell, png_img
from mllm.report.integrity import integrity_lines
from mllm.report.plots import plt
from mllm.report.stats import Estimate, pope_estimates
from mllm.report.tables import html_table
from mllm.workflow.world import POPE_SETTINGS

METRICS = (("accuracy", "accuracy"), ("precision", "precision"), ("recall", "recall"))
METRICS += (("f1", "F1"), ("yes_ratio", "yes-ratio"))


def pope_settings(inputs: ReportInputs) -> list[str]:
    found = {setting for _, setting in inputs.pope}
    return [setting for setting in POPE_SETTINGS if setting in found]


def stage_estimates(inputs: ReportInputs) -> dict[tuple[str, str], dict[str, Estimate]]:
    """(stage, setting) -> metric -> estimate, from the answers (point values alone, without
    an interval, where a result has no answers file)."""
    estimates = {}
    for key, metrics in inputs.pope.items():
        answers = inputs.pope_answers.get(key)
        if answers:
            estimates[key] = pope_estimates(answers)
        else:
            estimates[key] = {
                name: Estimate(metrics[name], metrics[name], metrics[name]) for name, _ in METRICS
            }
    return estimates


def pope_plot_png(estimates: Mapping[tuple[str, str], Mapping[str, Estimate]], stages, settings):
    """Accuracy and yes-ratio per stage, one bar per setting, with the 95 % intervals."""
    figure, axes = plt.subplots(1, 2, figsize=(max(6, 1.6 * len(stages) + 3) * 2, 3.6))
    width = 0.8 / len(settings)
    for axis, metric in zip(axes, ("accuracy", "yes_ratio"), strict=True):
        for offset, setting in enumerate(settings):
            xs, values, errors = [], [], [[], []]
            for x, stage in enumerate(stages):
                estimate = estimates.get((stage, setting), {}).get(metric)
                if estimate is None:
                    continue
                xs.append(x + (offset - (len(settings) - 1) / 2) * width)
                values.append(estimate.value)
                errors[0].append(estimate.value - estimate.low)
                errors[1].append(estimate.high - estimate.value)
            axis.bar(xs, values, width, yerr=errors, capsize=3, label=setting)
        axis.axhline(0.5, color="#999", linewidth=0.8, linestyle="--")
        axis.set_xticks(range(len(stages)), stages, rotation=20)
        axis.set_ylim(0, 1)
        axis.set_title("POPE " + ("accuracy" if metric == "accuracy" else "yes-ratio"))
        axis.grid(alpha=0.3, axis="y")
    axes[0].legend(title="negatives")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def pope_section(inputs: ReportInputs, figures: dict[str, bytes]) -> str:
    if not inputs.pope:
        return ""
    settings = pope_settings(inputs)
    stages = [s for s in inputs.stages if any((s, t) in inputs.pope for t in settings)]
    estimates = stage_estimates(inputs)
    rows = []
    for setting in settings:
        for stage in stages:
            metrics = inputs.pope.get((stage, setting))
            if metrics is None:
                continue
            unclear = metrics["unparseable"]
            rows.append(
                [
                    html.escape(setting),
                    f"<b>{html.escape(stage)}</b>",
                    str(metrics["n"]),
                    *(estimate_cell(estimates[stage, setting][name], 3)[0] for name, _ in METRICS),
                    f"{unclear} ({metrics['unparseable_read_as_yes']} read as yes)",
                ]
            )
    headers = ["negatives", "stage", "n", *(label for _, label in METRICS)]
    headers.append("neither yes nor no")
    figures["pope"] = pope_plot_png(estimates, stages, settings)
    return f"""<h2 id="pope">POPE (object hallucination as yes/no questions)</h2>
<p>"Is there a … in the image?" about 3 objects in each image and 3 absent ones, drawn at random
(<i>random</i>), the most frequent objects (<i>popular</i>) or those that co-occur most often
with the image's objects (<i>adversarial</i>). Answers are read with the official rule (first
sentence; "no" iff a word is No/no/not, otherwise yes); the last column counts the answers
whose first word is neither yes nor no, which that rule silently reads as yes (or, with
"not", as no). A model that follows co-occurrence rather than the image does worse on
adversarial and popular negatives than on random ones, with a higher yes-ratio. Brackets:
95 % bootstrap intervals over questions (1000 resamples, seeded).</p>
{html_table(headers, rows, numeric=range(2, len(headers)))}
{png_img(figures["pope"], "POPE accuracy and yes-ratio per stage and setting")}
{integrity_lines(inputs.benchmark_files, [f"pope/{s}" for s in settings])}"""
