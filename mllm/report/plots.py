"""Figures for the report: matplotlib, rendered to PNG bytes (embedded inline, and saved beside the
page with their data so a reader can re-plot them)."""

from __future__ import annotations

import io
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def loss_series(log_history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """(step, value) series of train and eval loss from a Trainer ``log_history``."""
    series: dict[str, list[tuple[int, float]]] = {"train loss": [], "eval loss": []}
    for entry in log_history:
        if "loss" in entry:
            series["train loss"].append((entry["step"], float(entry["loss"])))
        if "eval_loss" in entry:
            series["eval loss"].append((entry["step"], float(entry["eval_loss"])))
    return series


def loss_curves_png(runs: Mapping[str, list[dict]], title: str) -> bytes:
    """One panel per run: train (line) and eval (markers) loss against the optimizer step."""
    figure, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.4), squeeze=False)
    for axis, (run, history) in zip(axes[0], runs.items(), strict=True):
        for name, points in loss_series(history).items():
            if points:
                steps, values = zip(*points, strict=True)
                axis.plot(steps, values, marker="o" if name == "eval loss" else None, label=name)
        axis.set_title(run)
        axis.set_xlabel("optimizer step")
        axis.set_ylabel("loss (mean over supervised tokens)")
        axis.set_yscale("log")
        axis.legend()
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


PREFERENCE_PANELS = (  # log_history key, panel title, y-axis label
    ("loss", "loss", "preference loss"),
    ("rewards/chosen", "reward of chosen", "β·log π/π_ref (chosen)"),
    ("rewards/rejected", "reward of rejected", "β·log π/π_ref (rejected)"),
    ("rewards/margins", "reward margin", "chosen − rejected reward"),
    ("rewards/accuracies", "reward accuracy", "share of pairs with margin > 0"),
)


def preference_curves_png(runs: Mapping[str, list[dict]]) -> bytes:
    """Loss and implicit rewards (β·log π/π_ref) of every preference run against the step."""
    figure, axes = plt.subplots(
        1, len(PREFERENCE_PANELS), figsize=(4 * len(PREFERENCE_PANELS), 3.4)
    )
    for axis, (key, title, ylabel) in zip(axes, PREFERENCE_PANELS, strict=True):
        for run, history in runs.items():
            points = [(e["step"], float(e[key])) for e in history if key in e]
            if points:
                steps, values = zip(*points, strict=True)
                axis.plot(steps, values, label=run)
        axis.set_title(title)
        axis.set_xlabel("optimizer step")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.suptitle("Preference alignment")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()
