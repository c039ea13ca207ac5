"""The grounding section: Acc@0.5 per dataset × split and stage beside the exercise forks'
numbers, and example images with the ground-truth (green) and predicted (red) boxes drawn."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mllm.data.images import load_image
from mllm.records import read_json, read_jsonl
from mllm.report.images import data_uri, draw_boxes
from mllm.report.references import REFERENCE_ACCURACY, REFERENCE_LABELS
from mllm.report.stats import rate_estimate
from mllm.report.tables import html_table

EXAMPLE_PX = 192


@dataclass
class GroundingSplit:
    """One stage's evaluation on one (dataset, split): the metrics JSON and its per-item rows."""

    metrics: Mapping
    items: list[dict] = field(default_factory=list)


def read_grounding(metric_paths: Sequence[str | os.PathLike]) -> dict[tuple, GroundingSplit]:
    """(stage, dataset, split) -> metrics + items, from `results/grounding/{stage}/{d}_{s}.json`
    and the `.jsonl` of per-item rows beside it."""
    splits = {}
    for path in metric_paths:
        metrics = read_json(path)
        rows = Path(path).with_suffix(".jsonl")
        items = read_jsonl(rows) if rows.exists() else []
        key = (metrics["stage"], metrics["dataset"], metrics["split"])
        splits[key] = GroundingSplit(metrics=metrics, items=items)
    return splits


def accuracy_cell(split: GroundingSplit) -> str:
    if not split.items:
        return f"{split.metrics['acc_at_0_5']:.3f}"
    estimate = rate_estimate([item["hit"] for item in split.items])
    return f'{estimate.value:.3f} <span class="ci">[{estimate.low:.3f}, {estimate.high:.3f}]</span>'


def grounding_table(splits: Mapping[tuple, GroundingSplit]) -> str:
    headers = ["dataset", "split", "stage", "n", "Acc@0.5 [95 % CI]", "parse failures", "mean IoU"]
    headers += list(REFERENCE_LABELS)
    rows = []
    for (stage, dataset, split), result in sorted(splits.items(), key=lambda kv: kv[0][1:]):
        metrics = result.metrics
        reference = REFERENCE_ACCURACY.get((dataset, split), {})
        cells = [
            html.escape(dataset),
            html.escape(split),
            html.escape(stage),
            str(metrics["n"]),
            accuracy_cell(result),
            f"{metrics['parse_failure_rate']:.3f}",
            f"{metrics['mean_iou']:.3f}",
            *(
                f"{reference[label]:.3f}" if label in reference else "–"
                for label in REFERENCE_LABELS
            ),
        ]
        rows.append(cells)
    return html_table(headers, rows, numeric=range(3, len(headers)))


def example_items(items: Sequence[Mapping], per_outcome: int) -> list[Mapping]:
    """The first hits and the first misses, so both what works and what fails is shown."""
    hits = [item for item in items if item["hit"]][:per_outcome]
    misses = [item for item in items if not item["hit"]][:per_outcome]
    return hits + misses


def example_figure(item: Mapping, image_folder: str | os.PathLike | None, stage: str) -> str:
    image = load_image(item["image"], image_folder, source=f"grounding item {item['expression']!r}")
    drawn = draw_boxes(image, item["gt_box"], item.get("pred_box"), EXAMPLE_PX)
    iou = item.get("iou")
    verdict = "hit" if item["hit"] else "miss"
    detail = "no box parsed" if item.get("pred_box") is None else f"IoU {iou:.2f}"
    return (
        f'<figure class="box-example"><img alt="{html.escape(item["expression"])}" '
        f'src="{data_uri(drawn)}"><figcaption><b>{html.escape(item["expression"])}</b><br>'
        f"{html.escape(stage)} · {verdict} · {detail}<br>"
        f"<code>{html.escape(str(item['answer']))}</code></figcaption></figure>"
    )


def data_notes_table(notes: Sequence[Mapping]) -> str:
    """Each converted split's size beside the standard split's, so a val set that is not the
    standard one (lmms-lab's RefCOCO and RefCOCOg val: 5,000 rows more) is never scored silently."""
    if not notes:
        return ""
    rows = []
    for note in sorted(notes, key=lambda n: (n["dataset"], n["split"])):
        standard = note.get("standard_rows")
        matches = note.get("matches_standard_split")
        rows.append(
            [
                html.escape(note["dataset"]),
                html.escape(note["split"]),
                f"{note['rows']:,}",
                "?" if standard is None else f"{standard:,}",
                f"{note['expressions']:,}",
                html.escape(", ".join(f"{k} {v}" for k, v in note.get("skipped", {}).items()))
                or "–",
                "yes" if matches else f"<b>no</b>: {html.escape(note.get('note', 'unknown size'))}",
            ]
        )
    headers = ["dataset", "split", "rows", "standard rows", "expressions", "skipped", "standard?"]
    return (
        "<p>Converted from lmms-lab's parquet releases: rows (objects) against the UNC / UMD "
        "split sizes. A split that is not the standard one is scored as published and marked "
        "here; its numbers are not comparable with the forks' val numbers.</p>"
        + html_table(headers, rows, numeric=[2, 3, 4])
    )


def grounding_section(
    splits: Mapping[tuple, GroundingSplit],
    image_folder: str | os.PathLike | None,
    notes: Sequence[Mapping] = (),
    examples_per_outcome: int = 3,
    integrity: str = "",
) -> str:
    """The table, example boxes, and ``integrity``: the REC files' lines (mllm.report.integrity)."""
    if not splits:
        return ""
    figures = []
    for stage in dict.fromkeys(stage for stage, _, _ in splits):
        first = next(s for (st, _, _), s in splits.items() if st == stage)
        figures += [
            example_figure(item, image_folder, stage)
            for item in example_items(first.items, examples_per_outcome)
        ]
    examples = (
        f'<p>Examples from the first split: ground truth <span style="color:#0a0">green</span>,'
        f' prediction <span style="color:#d00">red</span>.</p><div class="examples">'
        f"{''.join(figures)}</div>"
        if figures
        else ""
    )
    return f"""<h2 id="grounding">Grounding (RefCOCO-style referring expressions)</h2>
<p>Acc@0.5 (Qwen-VL Precision@1): a referent is found when the predicted box overlaps the ground
truth with IoU ≥ 0.5; an answer without a parseable box counts as a miss and is reported as a
parse failure. Intervals: 95 % bootstrap over referents. The last columns are the exercise forks'
numbers on the real datasets (EXERCISE_SPEC §6), for context only.</p>
{grounding_table(splits)}
{integrity}
{data_notes_table(notes)}
{examples}"""
