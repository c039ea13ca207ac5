"""The workflow's report: one self-contained HTML page (inline CSS, no network) built only from the
metric artifacts, so it can be regenerated, diffed and shared."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mllm.atomic import write_text
from mllm.report.plots import loss_curves_png, preference_curves_png

CHAIR_COLUMNS = ("CHAIRs", "CHAIRi", "Recall", "Len")

# The exercise's base-model numbers (EXERCISE_SPEC 4.1 and 6) for context beside the demo's.
CHAIR_REFERENCES = {
    "exercise target (base)": (32.7, 8.5, 61.7, 126.0),
    "[L] base, sampling": (29.7, 9.2, 62.3, 126.4),
    "[L] base, greedy": (26.3, 7.3, 60.5, 131.3),
    "[L] base, beam 3": (24.3, 6.9, 63.3, 135.6),
}

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { padding: 0.25rem 0.7rem; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.reference td { color: #777; font-style: italic; }
.caption { margin: 0.4rem 0 1rem; }
.hallucinated { background: #ffd6d6; color: #a00; font-weight: 600; border-radius: 3px; padding: 0 2px; }
.meta { color: #666; font-size: 0.9rem; }
code { background: #f4f4f4; padding: 0 3px; }
"""


# CHAIRs / CHAIRi / Recall / Len after preference alignment on the real model (EXERCISE_SPEC 4.1, 6).
PREFERENCE_REFERENCES = {
    "exercise bar (from 32.7 / 8.5)": ("< 29.5", "< 7.8", "", ""),
    "[L] SFT + NCA β .1": (24.3, 7.3, 62.6, 126.0),
    "[Q0] DPO β .5, greedy": (18.0, 5.1, 54.9, 108.9),
}

# Yes/no accuracy on the exercise's 474 test questions (EXERCISE_SPEC 6, fork [L]).
YESNO_REFERENCES = {
    "[L] base": "0.693–0.696",
    "[L] full FT (lr 2e-6, batch 32, 100 steps)": "0.898",
    "[L] LoRA runs": "0.81–0.835",
}


@dataclass
class ReportInputs:
    chair: Mapping[tuple[str, str], Mapping]  # (stage, strategy) -> CHAIR metrics JSON
    stages: list[str] = field(default_factory=list)
    yesno: Mapping[str, Mapping] = field(default_factory=dict)  # stage -> yes/no metrics
    training: Mapping[str, Mapping] = field(default_factory=dict)  # run -> {metrics, log_history}
    preference_runs: list[str] = field(default_factory=list)  # which training runs are DPO/NCA
    preference_start: str | None = None
    provenance: Mapping[str, str] = field(default_factory=dict)
    samples_per_strategy: int = 4


def _cell(value) -> str:
    return f"{value:.1f}" if isinstance(value, float) else html.escape(str(value))


def table(
    headers: Sequence[str], rows: Sequence[Sequence], row_classes: Sequence[str] | None = None
) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        css = f' class="{row_classes[index]}"' if row_classes and row_classes[index] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def chair_table(chair: Mapping[tuple[str, str], Mapping]) -> str:
    rows = [
        [f"{stage} · {strategy}", *(m[c] for c in CHAIR_COLUMNS)]
        for (stage, strategy), m in chair.items()
    ]
    classes = [""] * len(rows)
    for name, values in CHAIR_REFERENCES.items():
        rows.append([name, *values])
        classes.append("reference")
    return table(["model · decoding", *CHAIR_COLUMNS], rows, classes)


def highlighted_caption(entry: Mapping) -> str:
    """The analysed caption with hallucinated object words marked."""
    marked = set(entry["hallucinated_indices"])
    words = [
        f'<span class="hallucinated">{html.escape(token)}</span>'
        if index in marked
        else html.escape(token)
        for index, token in enumerate(entry["tokens"])
    ]
    return " ".join(words)


def samples_section(chair: Mapping[tuple[str, str], Mapping], per_strategy: int) -> str:
    parts = []
    for (stage, strategy), metrics in chair.items():
        hallucinating = [e for e in metrics["per_caption"] if e["hallucinated_indices"]]
        chosen = (hallucinating or metrics["per_caption"])[:per_strategy]
        parts.append(f"<h3>{html.escape(stage)} · {html.escape(strategy)}</h3>")
        for entry in chosen:
            gt = ", ".join(entry["gt_objects"]) or "none"
            parts.append(
                f'<div class="caption">{highlighted_caption(entry)}'
                f'<div class="meta">image {entry["image_id"]} · ground-truth objects: {html.escape(gt)}</div></div>'
            )
    return "\n".join(parts)


def png_img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def sft_section(inputs: ReportInputs) -> str:
    """Base vs each SFT run: eval loss, yes/no accuracy and what SFT did to captioning (CHAIR)."""
    sft_runs = {run: t for run, t in inputs.training.items() if run not in inputs.preference_runs}
    if not sft_runs:
        return ""
    strategy = next((s for (stage, s) in inputs.chair if stage in sft_runs), None)
    rows = []
    for stage in ["base", *sft_runs]:
        training = sft_runs.get(stage, {}).get("metrics", {})
        yesno = inputs.yesno.get(stage, {})
        chair = inputs.chair.get((stage, strategy), {})
        base_eval = next(
            (t["metrics"].get("eval_loss_before") for t in inputs.training.values()), None
        )
        eval_loss = training.get("eval_loss", base_eval if stage == "base" else None)
        rows.append(
            [
                stage,
                "–" if eval_loss is None else f"{eval_loss:.3f}",
                "–" if not yesno else f"{yesno['accuracy']:.3f}",
                "–" if not yesno else f"{yesno['unparseable_rate']:.3f}",
                *(
                    "–" if not chair else f"{chair[c]:.1f}"
                    for c in ("CHAIRs", "CHAIRi", "Recall", "Len")
                ),
            ]
        )
    classes = [""] * len(rows)
    for name, value in YESNO_REFERENCES.items():
        rows.append([name, "", value, "", "", "", "", ""])
        classes.append("reference")
    headers = [
        "stage",
        "eval loss",
        "yes/no acc.",
        "unparseable",
        *(f"{c} ({strategy})" for c in CHAIR_COLUMNS),
    ]
    curves = loss_curves_png(
        {run: t["log_history"] for run, t in inputs.training.items()}, "SFT loss"
    )
    return f"""<h2>Supervised fine-tuning</h2>
<p>Eval loss on the yes/no test set (the base row: the starting model, measured in the SFT job);
accuracy: greedy answers normalised to a leading yes/no, unparseable answers count as wrong.
The CHAIR columns show what fine-tuning on short answers did to captioning.</p>
{table(headers, rows, classes)}
{png_img(curves, "SFT train and eval loss")}"""


def preference_section(inputs: ReportInputs) -> str:
    """CHAIR of the starting model vs every loss × β run, with the final rewards and the curves."""
    runs = [run for run in inputs.preference_runs if run in inputs.training]
    if not runs:
        return ""
    strategy = next((s for (stage, s) in inputs.chair if stage in runs), None)
    rows = []
    for stage in [inputs.preference_start, *runs]:
        chair = inputs.chair.get((stage, strategy), {})
        history = inputs.training.get(stage, {}).get("log_history", [])
        last = next((e for e in reversed(history) if "rewards/margins" in e), {})
        rows.append(
            [
                stage if stage in runs else f"{stage} (start)",
                *("–" if not chair else f"{chair[c]:.1f}" for c in CHAIR_COLUMNS),
                "–" if not last else f"{last['rewards/margins']:.3f}",
                "–" if not last else f"{last['rewards/accuracies']:.2f}",
            ]
        )
    classes = [""] * len(rows)
    for name, values in PREFERENCE_REFERENCES.items():
        rows.append([name, *values, "", ""])
        classes.append("reference")
    headers = [f"model ({strategy})", *CHAIR_COLUMNS, "final margin", "final reward acc."]
    curves = preference_curves_png({run: inputs.training[run]["log_history"] for run in runs})
    return f"""<h2>Preference alignment</h2>
<p>Each run starts from <code>{html.escape(str(inputs.preference_start))}</code>, which is also the
reference model (its log-probs are scored once and cached). Rewards are β·(log π − log π_ref).
Grey rows: the exercise's bar and forks' results on the real 8B model.</p>
{table(headers, rows, classes)}
{png_img(curves, "preference loss and rewards")}"""


def render(inputs: ReportInputs) -> str:
    analyzers = sorted({m["analyzer"]["name"] for m in inputs.chair.values()})
    provenance = table(["item", "value"], [[k, v] for k, v in inputs.provenance.items()])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mllm-workflow report</title>
<style>{STYLE}</style></head>
<body>
<h1>mllm-workflow report</h1>
<h2>Hallucination (CHAIR)</h2>
<p>Percentages except Len (mean caption length in tokens). Lower CHAIRs/CHAIRi is better.
Grey rows: the exercise's numbers for the real 8B model, for context.
Text analyzer: <code>{html.escape(", ".join(analyzers))}</code>.</p>
{chair_table(inputs.chair)}
{sft_section(inputs)}
{preference_section(inputs)}
<h2>Sample captions</h2>
<p>Hallucinated object words are <span class="hallucinated">marked</span>.</p>
{samples_section(inputs.chair, inputs.samples_per_strategy)}
<h2>Provenance</h2>
{provenance}
</body></html>
"""


def write_report(inputs: ReportInputs, path: str | os.PathLike) -> None:
    write_text(path, render(inputs))
