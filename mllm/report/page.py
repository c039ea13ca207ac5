"""The workflow's report: one self-contained HTML page (inline CSS and script, images embedded, no
network) built only from the metric artifacts, so it can be regenerated, diffed and shared. The
figures and the headline table are also written beside it for Snakemake's native report.

This module assembles the page; each section is built by its own module (overview, headline,
training, grounding, viewer, provenance) from :class:`~mllm.report.content.ReportInputs`."""

from __future__ import annotations

import csv
import html
import io
import os
from dataclasses import dataclass
from pathlib import Path

from mllm.atomic import atomic_directory, write_text
from mllm.report.content import ReportInputs, grounding_splits
from mllm.report.grounding import grounding_section
from mllm.report.headline import headline
from mllm.report.integrity import integrity_lines
from mllm.report.jobs import config_hash
from mllm.report.overview import overview_section
from mllm.report.pope import pope_section
from mllm.report.provenance import provenance_section
from mllm.report.training import preference_section, sft_section
from mllm.report.viewer import viewer_section

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
ul.integrity { margin: 0.2rem 0 1rem; padding-left: 1.2rem; }
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
class Report:
    """The page, and what the native Snakemake report shows beside it."""

    html: str
    figures: dict[str, bytes]  # file stem -> PNG
    headline: list[list[str]]  # TSV rows, plain text


def build_report(inputs: ReportInputs) -> Report:
    figures: dict[str, bytes] = {}
    headline_html, headline_rows = headline(inputs)
    sections = [
        overview_section(inputs),
        headline_html,
        sft_section(inputs, figures),
        preference_section(inputs, figures),
        pope_section(inputs, figures),
        grounding_section(
            inputs.grounding,
            inputs.grounding_image_folder,
            inputs.data_notes,
            integrity=integrity_lines(
                inputs.benchmark_files,
                [f"grounding/{dataset}/{split}" for dataset, split in grounding_splits(inputs)],
            ),
        ),
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
            ("pope", "POPE"),
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
