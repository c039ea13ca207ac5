"""The headline section: every evaluated stage × metric with its interval, the published
reference numbers beneath; the same rows as plain text for the headline TSV."""

from __future__ import annotations

import html

from mllm.report.content import (
    ReportInputs,
    chair_analyzers,
    estimate_cell,
    grounding_splits,
    plain,
    shown_stages,
    strategies,
)
from mllm.report.integrity import integrity_lines
from mllm.report.references import (
    CHAIR_COLUMNS,
    GROUNDING_REFERENCE_ROWS,
    HEADLINE_REFERENCES,
    REFERENCE_ACCURACY,
    YESNO,
)
from mllm.report.stats import chair_estimates, rate_estimate
from mllm.report.tables import html_table

WITH_INTERVAL = ("CHAIRs", "CHAIRi")
# What an analyzer's numbers compare with (mllm.eval.text_analysis; tested in tests/test_chair.py:
# the two offline analyzers share tokenizer and tagger, and their lemmatizers agree on every word
# CHAIR can match).
ANALYZER_NOTES = {
    "nltk": "the exercise's chair.py pipeline",
    "offline": "offline-rules, without WordNet, gives the same numbers for every caption",
    "offline-rules": "the same numbers as offline, with WordNet, for every caption",
}


def analyzer_sentence(inputs: ReportInputs) -> str:
    """Which text analyzer the CHAIR numbers rest on, with its components."""
    described = []
    for name, info in chair_analyzers(inputs).items():
        parts = [str(v) for k, v in info.items() if k not in ("name", "versions")]
        parts += [ANALYZER_NOTES[name]] if name in ANALYZER_NOTES else []
        described.append(f"<code>{html.escape(name)}</code> ({html.escape('; '.join(parts))})")
    return f"<p>CHAIR text analyzer: {', '.join(described)}.</p>" if described else ""


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
                    estimate_cell(estimates[column], 1)
                    if column in WITH_INTERVAL
                    else (f"{metrics[column]:.1f}",) * 2
                )
        if stage in inputs.yesno:
            answers = inputs.yesno_answers.get(stage)
            cells[YESNO] = (
                estimate_cell(rate_estimate([a["prediction"] == a["target"] for a in answers]), 3)
                if answers
                else (f"{inputs.yesno[stage]['accuracy']:.3f}",) * 2
            )
        for dataset, split in splits:
            result = inputs.grounding.get((stage, dataset, split))
            if result is not None:
                cells[("grounding", dataset, split)] = (
                    estimate_cell(rate_estimate([item["hit"] for item in result.items]), 3)
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
        shown = [plain(v) for v in row]
        html_rows.append([html.escape(name), *shown])
        text_rows.append([f"reference: {name}", *(html.unescape(v) for v in shown)])
        classes.append("reference")

    page = f"""<h2 id="headline">Headline results</h2>
<p>Every evaluated stage × metric. CHAIRs / CHAIRi / Recall in percent (lower CHAIR is better),
Len: mean caption length in tokens; accuracies as fractions. Brackets: 95 % bootstrap intervals
(1000 resamples of captions, questions or referents, seeded). Grey rows: the exercise's numbers
and its forks' results on the real 8B model and real data (EXERCISE_SPEC §4, §6), for context:
the demo world is not those benchmarks.</p>
{analyzer_sentence(inputs)}
{html_table(["stage", *headers], html_rows, classes, groups=[("", 1), *groups])}
{integrity_lines(inputs.benchmark_files, ["chair", "yesno", *(f"grounding/{d}/{s}" for d, s in splits)])}"""
    return page, [["stage", *text_headers], *text_rows]
