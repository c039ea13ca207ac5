"""Where a workflow run's time went: one row per benchmarked job, from Snakemake's `benchmark:`
files, longest first, as the Markdown table `docs/timing.md` holds.

    .venv/bin/python bench/job_table.py [--benchmarks benchmarks] [--wall SECONDS] [--out FILE]

`--wall` is the run's own wall time (e.g. `time make report`), shown beside the jobs' sum: with
two cores the jobs overlap, so the sum exceeds the wall time by what ran side by side.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from mllm.atomic import write_text


def job_rows(benchmarks: Path) -> list[tuple[str, float, float]]:
    """(job, wall seconds, peak RSS MB) per benchmark file under `benchmarks` (the last repeat)."""
    rows = []
    for path in sorted(benchmarks.rglob("*.tsv")):
        with path.open() as handle:
            records = list(csv.DictReader(handle, delimiter="\t"))
        if not records:
            continue
        last = records[-1]
        rss = float(last["max_rss"]) if last.get("max_rss", "-") not in ("-", "", "NA") else 0.0
        rows.append((str(path.relative_to(benchmarks).with_suffix("")), float(last["s"]), rss))
    return sorted(rows, key=lambda row: -row[1])


def markdown(rows: list[tuple[str, float, float]], wall: float | None) -> str:
    total = sum(seconds for _, seconds, _ in rows)
    lines = [
        "| job | wall time (s) | share of the jobs' sum | peak RSS (MB) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {job} | {seconds:.1f} | {100 * seconds / total:.1f} % | {rss:,.0f} |"
        for job, seconds, rss in rows
    ]
    summary = f"{len(rows)} jobs, {total:.0f} s in all"
    if wall is not None:
        summary += (
            f"; the run's wall time {wall:.0f} s ({total / wall:.2f} jobs at a time on average)"
        )
    return "\n".join([*lines, "", summary + "."])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmarks", type=Path, default=Path("benchmarks"))
    parser.add_argument("--wall", type=float, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    text = markdown(job_rows(args.benchmarks), args.wall)
    if args.out:
        write_text(args.out, text + "\n")
    print(text)


if __name__ == "__main__":
    main()
