"""The training sections: supervised fine-tuning (eval loss, yes/no accuracy, loss curves) and
preference alignment (final rewards, loss and reward curves)."""

from __future__ import annotations

import html

from mllm.report.content import ReportInputs, png_img, table
from mllm.report.integrity import integrity_lines
from mllm.report.plots import loss_curves_png, preference_curves_png
from mllm.report.references import PREFERENCE_BAR


def layout_table(training: dict[str, dict]) -> str:
    """Ranks, nodes and global batch of each run (from its metrics.json): the node and GPU counts
    change the global batch, so two runs compare only with these in view. Empty for runs written
    before they were recorded."""
    rows = [
        [
            run,
            metrics.get("world_size", "–"),
            metrics.get("nodes", "–"),
            metrics.get("global_batch_size", "–"),
        ]
        for run, entry in training.items()
        if "world_size" in (metrics := entry.get("metrics", {}))
    ]
    if not rows:
        return ""
    return table(["run", "ranks (world size)", "nodes", "global batch"], rows)


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
{layout_table(supervised)}
{integrity_lines(inputs.benchmark_files, ["yesno"] if rows else [])}
{png_img(figures["sft_loss"], "supervised fine-tuning train and eval loss")}"""


BAR_HEADERS = ("CHAIRs", "CHAIRi", "exercise bar")


def chair_against_bar(inputs: ReportInputs, run: str) -> list[str]:
    """The run's CHAIRs / CHAIRi (sampling, else its first decoded strategy) and whether both
    are below the exercise's bar."""
    decoded = [key for key in inputs.chair if key[0] == run]
    if not decoded:
        return ["–", "–", "not decoded"]
    metrics = inputs.chair[next((k for k in decoded if k[1] == "sampling"), decoded[0])]
    met = all(metrics[name] < bar for name, bar in PREFERENCE_BAR.items())
    return [
        *(f"{metrics[name]:.1f}" for name in PREFERENCE_BAR),
        "met" if met else "not met",
    ]


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
                *chair_against_bar(inputs, run),
            ]
        )
    figures["preference"] = preference_curves_png(
        {run: inputs.training[run]["log_history"] for run in runs}
    )
    return f"""<h2 id="preference">Preference alignment</h2>
<p>Each run starts from <code>{html.escape(str(inputs.preference_start))}</code>, which is also the
reference model (its log-probs are scored once and cached). Rewards are β·(log π − log π_ref) of
the chosen and rejected answers; the margin is their difference, the accuracy the share of pairs
with a positive margin. Values of the last logged step. CHAIR: the run's sampled captions, beside
the exercise's bar after preference training (CHAIRs &lt; {PREFERENCE_BAR["CHAIRs"]}, CHAIRi &lt;
{PREFERENCE_BAR["CHAIRi"]} on the real objhal bench; the demo world is not that benchmark).</p>
{table(["run", "loss", "rewards/chosen", "rewards/rejected", "margin", "reward acc.", *BAR_HEADERS], rows)}
{layout_table({run: inputs.training[run] for run in runs})}
{png_img(figures["preference"], "preference loss and rewards")}"""
