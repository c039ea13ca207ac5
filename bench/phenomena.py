"""Do the demo's phenomena hold for other training seeds and thread counts? (issue 18)

Runs the demo workflow once per (training seed, thread count), each in its own working directory
with the default config's every training seed set to the seed and `compute.threads` to the thread
count, up to the jobs the phenomena read, then writes a table of mean / min / max per phenomenon:

    .venv/bin/python bench/phenomena.py [--seeds 0 1 2] [--threads 1 2] [--cores 2]
        [--workdir bench_runs/phenomena] [--out docs/phenomena]

Runs whose thread counts fit in `--cores` together run side by side. The world (its own seed)
stays the default's: the phenomena are about training, not about one lucky draw of training
randomness or one CPU's summation order. Writes `<out>.md` (the table) and `<out>.json` (what the
report reads to say how many seeds × threads the recipe was checked on).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from snakemake.utils import validate

from mllm.atomic import write_json, write_text
from mllm.demo.config import DemoWorldConfig
from mllm.report.jobs import config_hash
from mllm.workflow.plan import Plan, section

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "config.yaml"


def checked_config_hash(config: dict) -> str:
    """The hash the report shows for `config` (its `config` param: the config after Snakemake
    validated it and filled the schema's defaults), so a report can tell it was checked."""
    config = json.loads(json.dumps(config))
    validate(config, str(REPO / "config" / "schema.yaml"))
    return config_hash(section(config))


def seeded_config(config: dict, seed: int, threads: int) -> dict:
    """`config` with every training seed (vision warm-up, base, SFT runs, preference, grounding)
    set to `seed` and every job's threads (`compute.threads`, `compute.eval_threads`) to `threads`;
    evaluation seeds stay as they are."""
    config = json.loads(json.dumps(config))
    config["vision_warmup"]["seed"] = seed
    config["base_model"]["seed"] = seed
    for run in config["sft"].values():
        run["training"]["seed"] = seed
    config["preference"]["training"]["seed"] = seed
    config["grounding"]["training"]["seed"] = seed
    config["compute"]["threads"] = config["compute"]["eval_threads"] = threads
    return config


def preference_run(config: dict, loss: str) -> str:
    """The stage name of one preference loss at the config's first beta, as the workflow names
    it (mllm.workflow.plan)."""
    beta = config["preference"]["betas"][0]
    runs = Plan(config).preference_runs.values()
    return next(run.name for run in runs if run.loss == loss and run.beta == beta)


def targets(config: dict) -> list[str]:
    """The metric files the phenomena read."""
    stages = [
        "base",
        *config["sft"],
        *(preference_run(config, loss) for loss in ("dpo", "dpo_nll", "nca")),
    ]
    files = [f"results/chair/{stage}/sampling.json" for stage in stages]
    files += [f"results/yesno/{stage}.json" for stage in ("base", *config["sft"])]
    files += [
        f"results/grounding/grounding/{dataset}_{split}.json"
        for dataset, splits in config["grounding"]["splits"].items()
        for split in splits
    ]
    return files


def partner_share(chair: dict, pairs: tuple[tuple[str, str], ...]) -> float:
    """Share of the hallucinated mentions that are the planted co-occurrence partner of an object
    in the image (the world's `pairs`)."""
    partner = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    hallucinated = planted = 0
    for caption in chair["per_caption"]:
        present = set(caption["gt_objects"])
        for _, node in caption["hallucinated_words"]:
            hallucinated += 1
            planted += partner.get(node) in present
    return planted / hallucinated if hallucinated else 0.0


@dataclass(frozen=True)
class Phenomenon:
    name: str
    rule: str  # the threshold, as the table shows it
    value: Callable[[Callable[[str], dict], dict], float]
    holds: Callable[[float], bool]


def _cut(metrics, config, loss: str) -> float:
    base = metrics("results/chair/base/sampling.json")["CHAIRi"]
    run = metrics(f"results/chair/{preference_run(config, loss)}/sampling.json")["CHAIRi"]
    return 100 * (base - run) / base


def _recall_loss(metrics, config, stage: str) -> float:
    base = metrics("results/chair/base/sampling.json")["Recall"]
    return base - metrics(f"results/chair/{stage}/sampling.json")["Recall"]


def _grounding(metrics, config, key: str, pick) -> float:
    return pick(
        metrics(f"results/grounding/grounding/{dataset}_{split}.json")[key]
        for dataset, splits in config["grounding"]["splits"].items()
        for split in splits
    )


PHENOMENA = (
    Phenomenon(
        "base CHAIRi (sampling)",
        "≥ 6",
        lambda m, c: m("results/chair/base/sampling.json")["CHAIRi"],
        lambda v: v >= 6,
    ),
    Phenomenon(
        "base hallucinations that are planted partners (%)",
        "≥ 50",
        lambda m, c: (
            100
            * partner_share(
                m("results/chair/base/sampling.json"),
                DemoWorldConfig.from_dict(c["demo_world"]).pairs,
            )
        ),
        lambda v: v >= 50,
    ),
    Phenomenon(
        "DPO+NLL CHAIRi cut (% of base)",
        "≥ 40",
        lambda m, c: _cut(m, c, "dpo_nll"),
        lambda v: v >= 40,
    ),
    Phenomenon(
        "DPO+NLL recall lost (points)",
        "≤ 10",
        lambda m, c: _recall_loss(m, c, preference_run(c, "dpo_nll")),
        lambda v: v <= 10,
    ),
    Phenomenon(
        "NCA CHAIRi cut (% of base)", "≥ 40", lambda m, c: _cut(m, c, "nca"), lambda v: v >= 40
    ),
    Phenomenon(
        "NCA recall lost (points)",
        "≤ 10",
        lambda m, c: _recall_loss(m, c, preference_run(c, "nca")),
        lambda v: v <= 10,
    ),
    Phenomenon(
        "plain DPO recall lost (points): its collapse",
        "≥ 20",
        lambda m, c: _recall_loss(m, c, preference_run(c, "dpo")),
        lambda v: v >= 20,
    ),
    Phenomenon(
        "LoRA SFT yes/no accuracy gain (points)",
        "≥ 15",
        lambda m, c: (
            100
            * (m("results/yesno/sft.json")["accuracy"] - m("results/yesno/base.json")["accuracy"])
        ),
        lambda v: v >= 15,
    ),
    Phenomenon(
        "LoRA SFT caption recall lost (points)",
        "≤ 10",
        lambda m, c: _recall_loss(m, c, "sft"),
        lambda v: v <= 10,
    ),
    Phenomenon(
        "full SFT caption recall lost (points): the exercise's lesson",
        "≥ 40",
        lambda m, c: _recall_loss(m, c, "sft_full"),
        lambda v: v >= 40,
    ),
    Phenomenon(
        "grounding Acc@0.5, worst split",
        "≥ 0.5",
        lambda m, c: _grounding(m, c, "acc_at_0_5", min),
        lambda v: v >= 0.5,
    ),
    Phenomenon(
        "grounding parse failures, worst split (%)",
        "≤ 2",
        lambda m, c: 100 * _grounding(m, c, "parse_failure_rate", max),
        lambda v: v <= 2,
    ),
)


def start_run(workdir: Path, config: dict, threads: int, log) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        *(sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir)),
        *("--cores", str(threads), *targets(config)),
        # last: --configfile takes every argument after it for one more config file
        *("--configfile", str(configfile)),
    ]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def run_all(runs: list[tuple[int, int]], base: dict, root: Path, cores: int) -> dict:
    """Every (seed, threads) run, as many at once as their threads fit in `cores`; returns
    each run's wall seconds."""
    pending, running, seconds = list(runs), {}, {}
    root.mkdir(parents=True, exist_ok=True)
    while pending or running:
        busy = sum(threads for _, threads in running)
        while pending and (not running or busy + pending[0][1] <= cores):
            seed, threads = pending.pop(0)
            workdir = root / f"seed{seed}_threads{threads}"
            log = open(workdir.with_suffix(".log"), "w")  # noqa: SIM115 (closed when it ends)
            config = seeded_config(base, seed, threads)
            running[(seed, threads)] = (
                start_run(workdir, config, threads, log),
                time.monotonic(),
                log,
            )
            busy += threads
            print(f"started seed {seed}, {threads} thread(s): {workdir}", flush=True)
        time.sleep(5)
        for key, (process, start, log) in list(running.items()):
            if process.poll() is None:
                continue
            log.close()
            del running[key]
            if process.returncode:
                raise SystemExit(f"run seed {key[0]} threads {key[1]} failed: {log.name}")
            seconds[key] = time.monotonic() - start
            print(f"finished seed {key[0]}, {key[1]} thread(s) in {seconds[key]:.0f} s", flush=True)
    return seconds


def measure(runs: list[tuple[int, int]], base: dict, root: Path) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {p.name: [] for p in PHENOMENA}
    for seed, threads in runs:
        workdir = root / f"seed{seed}_threads{threads}"
        config = seeded_config(base, seed, threads)

        def metrics(path: str, workdir=workdir) -> dict:
            return json.loads((workdir / path).read_text())

        for phenomenon in PHENOMENA:
            values[phenomenon.name].append(phenomenon.value(metrics, config))
    return values


def table(
    runs, values: dict[str, list[float]], seconds: dict, config_hash_value: str
) -> tuple[str, dict]:
    seeds = sorted({seed for seed, _ in runs})
    threads = sorted({t for _, t in runs})
    rows, results = [], []
    for phenomenon in PHENOMENA:
        vals = values[phenomenon.name]
        holds = all(phenomenon.holds(v) for v in vals)
        results.append(
            dict(
                name=phenomenon.name,
                rule=phenomenon.rule,
                mean=statistics.fmean(vals),
                min=min(vals),
                max=max(vals),
                values=vals,
                holds=holds,
            )
        )
        rows.append(
            f"| {phenomenon.name} | {phenomenon.rule} | {statistics.fmean(vals):.2f} | "
            f"{min(vals):.2f} | {max(vals):.2f} | {'yes' if holds else '**no**'} |"
        )
    held = sum(row["holds"] for row in results)
    wall = ", ".join(
        f"seed {s}/{t} thr {seconds[(s, t)]:.0f} s" for s, t in runs if (s, t) in seconds
    )
    text = "\n".join(
        [
            "# The demo's phenomena over training seeds × threads",
            "",
            f"Written by `bench/phenomena.py`: the config of hash `{config_hash_value}` with every"
            f" training seed set to each of {seeds} and every job's threads to each of {threads}"
            f" ({len(runs)} runs, same world). {held} of {len(results)} phenomena hold in every run.",
            "",
            "| phenomenon | must be | mean | min | max | holds in every run |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            *(
                [f"Wall time per run (side by side where their threads fit the cores): {wall}."]
                if wall
                else []
            ),
            "",
        ]
    )
    summary = dict(
        seeds=seeds,
        threads=threads,
        runs=len(runs),
        config_hash=config_hash_value,
        phenomena=results,
    )
    return text, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--workdir", type=Path, default=REPO / "bench_runs" / "phenomena")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "phenomena")
    parser.add_argument("--only-table", action="store_true", help="tabulate finished runs")
    args = parser.parse_args()

    base = yaml.safe_load(args.config.read_text())
    runs = [(seed, threads) for threads in args.threads for seed in args.seeds]
    seconds = {} if args.only_table else run_all(runs, base, args.workdir, args.cores)
    values = measure(runs, base, args.workdir)
    text, summary = table(runs, values, seconds, checked_config_hash(base))
    write_text(args.out.with_suffix(".md"), text)
    write_json(args.out.with_suffix(".json"), summary, indent=1)
    print(text)


if __name__ == "__main__":
    main()
