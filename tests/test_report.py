"""The HTML report: tables and intervals from metric artifacts, highlighted hallucinations, the
grounding section, optional sections, and Snakemake's native report on the tiny run."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from mllm.report.content import ReportInputs
from mllm.report.grounding import read_grounding
from mllm.report.inputs import collect_inputs
from mllm.report.jobs import (
    JobCost,
    config_hash,
    read_job_cost,
    seeds,
    stage_costs,
)
from mllm.report.page import build_report, render, write_report
from mllm.report.plots import loss_series
from mllm.report.stats import bootstrap_ratio, chair_estimates, rate_estimate
from mllm.report.viewer import benchmark_thumbnails

REPO = Path(__file__).resolve().parents[1]


def caption(hallucinated: list[int], image_id: int = 7) -> dict:
    return {
        "image_id": image_id,
        "tokens": ["a", "dog", "and", "a", "knife", "."],
        "mention_indices": [1, 4],
        "node_words": ["dog", "knife"],
        "hallucinated_words": [["knife", "knife"]] if 4 in hallucinated else [],
        "hallucinated_indices": hallucinated,
        "gt_objects": ["dog"],
    }


def chair_metrics(chairs: float, hallucinated: list[int]) -> dict:
    return {
        "CHAIRs": chairs,
        "CHAIRi": 10.0,
        "Recall": 80.0,
        "Len": 25.0,
        "analyzer": {"name": "offline", "tagger": "textblob PatternTagger"},
        "per_caption": [caption(hallucinated)],
    }


def sampling_chair(chairs: dict[str, float]) -> dict:
    """Each stage's sampling CHAIR metrics (CHAIRs as given, no hallucinated mention)."""
    return {(stage, "sampling"): chair_metrics(value, []) for stage, value in chairs.items()}


# --- bootstrap ---------------------------------------------------------------------------------


def test_bootstrap_of_a_known_bernoulli_sample_matches_the_normal_interval():
    sample = [1] * 300 + [0] * 700  # p = 0.3, n = 1000: 0.3 ± 1.96·sqrt(0.21/1000) = ± 0.0284
    estimate = rate_estimate(sample)
    assert estimate.value == pytest.approx(0.3)
    assert estimate.low == pytest.approx(0.3 - 0.0284, abs=0.006)
    assert estimate.high == pytest.approx(0.3 + 0.0284, abs=0.006)
    assert rate_estimate(sample) == estimate  # seeded
    assert rate_estimate(sample, seed=1) != estimate


def test_bootstrap_of_a_constant_sample_has_no_width_and_ratio_is_of_sums():
    constant = rate_estimate([True] * 20)
    assert (constant.value, constant.low, constant.high) == (1.0, 1.0, 1.0)
    ratio = bootstrap_ratio([1, 0, 3], [2, 0, 4], scale=100)
    assert ratio.value == pytest.approx(100 * 4 / 6)  # not the mean of per-unit ratios
    assert ratio.low <= ratio.value <= ratio.high
    with pytest.raises(ValueError):
        bootstrap_ratio([], [])


def test_chair_estimates_resample_captions():
    per_caption = [caption([4])] * 3 + [caption([])]
    estimates = chair_estimates(per_caption)
    assert estimates["CHAIRs"].value == pytest.approx(75.0)  # 3 of 4 captions
    assert estimates["CHAIRi"].value == pytest.approx(37.5)  # 3 of 8 mentions
    assert 0 <= estimates["CHAIRs"].low <= 75.0 <= estimates["CHAIRs"].high <= 100


# --- overview ----------------------------------------------------------------------------------


def test_benchmark_files_give_wall_time_and_peak_memory_per_stage(tmp_path):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    decode = tmp_path / "benchmarks" / "decode" / "sft" / "greedy.tsv"
    decode.parent.mkdir(parents=True)
    decode.write_text(header + "11.08\t0:00:11\t535.61\t920\t511\t521\t2.9\t0.03\t92\t10.6\n")
    train = tmp_path / "benchmarks" / "train_sft" / "sft.tsv"
    train.parent.mkdir(parents=True)
    train.write_text(header + "60.0\t0:01:00\tNA\t-\t-\t-\t-\t-\t-\t-\n")
    jobs = [read_job_cost(decode, "sft"), read_job_cost(train, "sft")]
    assert jobs[0] == JobCost("decode/sft/greedy", "sft", 11.08, 535.61)
    assert jobs[1].max_rss_mb is None
    costs = stage_costs(jobs, ["sft", "base"])
    assert costs["sft"]["seconds"] == pytest.approx(71.08)
    assert costs["sft"]["max_rss_mb"] == 535.61
    assert costs["base"] == {"jobs": [], "seconds": 0, "max_rss_mb": None}


def test_config_hash_ignores_key_order_and_seeds_are_found_by_path():
    assert config_hash({"a": 1, "b": {"c": 2}}) == config_hash({"b": {"c": 2}, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert seeds({"decoding": {"seed": 0}, "sft": {"x": {"training": {"seed": 3}}}}) == {
        "decoding.seed": 0,
        "sft.x.training.seed": 3,
    }


# --- page --------------------------------------------------------------------------------------


def test_headline_table_has_intervals_references_and_the_overview():
    page = render(
        ReportInputs(
            chair={("base", "greedy"): chair_metrics(100.0, [4])},
            stages=["base"],
            jobs=[JobCost("decode/base/greedy", "base", 65.0, 512.0)],
            config={"world": "demo", "decoding": {"seed": 0}},
        )
    )
    assert '<td class="num">100.0 <span class="ci">[100.0, 100.0]</span></td>' in page
    assert "[L] base" in page and "26.3" in page  # the fork's greedy numbers beside ours
    assert "Acc@0.5" not in page  # grounding not configured: no columns, no section
    assert "Supervised fine-tuning" not in page and 'id="preference"' not in page
    assert "1 min 05 s" in page and "512 MB" in page
    assert config_hash({"world": "demo", "decoding": {"seed": 0}}) in page
    assert "decoding.seed = 0" in page and "textblob PatternTagger" in page
    assert '<span class="hallucinated" title="knife">knife</span>' in page


def recipe_check_summary(config_hash_value: str, holds: tuple[bool, ...]) -> dict:
    """A bench/phenomena.py summary: 3 seeds x 2 thread counts, one row per phenomenon."""
    return {
        "seeds": [0, 1, 2],
        "threads": [1, 2],
        "runs": 6,
        "config_hash": config_hash_value,
        "phenomena": [
            {"name": f"phenomenon {index}", "holds": held} for index, held in enumerate(holds)
        ],
    }


@pytest.mark.parametrize("checked", [True, False])
def test_the_overview_quotes_the_recipe_check_and_whether_it_covers_this_config(checked):
    config = {"world": "demo", "decoding": {"seed": 0}}
    checked_hash = config_hash(config) if checked else "0123456789ab"
    page = render(
        ReportInputs(
            chair={("base", "greedy"): chair_metrics(10.0, [])},
            stages=["base"],
            config=config,
            recipe_checks=[recipe_check_summary(checked_hash, (True, False, True))],
        )
    )
    assert "2 of 3 phenomena held in every one of 6 runs" in page
    assert "training seeds [0, 1, 2] × threads [1, 2]" in page
    assert "Not in every run: phenomenon 1." in page
    assert ("is the one checked" in page) is checked
    assert ("the check does not cover it" in page) is not checked


def test_headline_names_the_chair_analyzer_and_what_it_compares_with():
    rules = {"name": "offline-rules", "lemmatizer": "RuleLemmatizer"}
    page = render(
        ReportInputs(
            chair={
                ("base", "greedy"): chair_metrics(100.0, [4]),
                ("base", "beam"): {**chair_metrics(100.0, [4]), "analyzer": rules},
            },
            stages=["base"],
        )
    )
    headline = page[page.index('id="headline"') : page.index("<h2", page.index('id="headline"'))]
    assert (
        "CHAIR text analyzer: <code>offline</code> (textblob PatternTagger; offline-rules, "
        "without WordNet, gives the same numbers for every caption), <code>offline-rules</code> "
        "(RuleLemmatizer; the same numbers as offline, with WordNet, for every caption)."
    ) in headline


def test_unconfigured_stages_are_absent_not_zero():
    page = render(
        ReportInputs(
            chair=sampling_chair({"base": 30.0}),
            stages=["base"],
            yesno={"base": {"accuracy": 0.5, "unparseable_rate": 0.0}},
        )
    )
    for absent in ("sft", "dpo", "nca", "grounding"):
        assert f"<b>{absent}" not in page


def test_sft_section_shows_base_and_runs_with_loss_curves():
    history = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}, {"step": 2, "eval_loss": 1.5}]
    report = build_report(
        ReportInputs(
            chair=sampling_chair({"base": 30.0, "sft": 20.0}),
            stages=["base", "sft"],
            yesno={
                "base": {"accuracy": 0.5, "unparseable_rate": 0.1, "yes_rate": 0.9},
                "sft": {"accuracy": 0.9, "unparseable_rate": 0.0, "yes_rate": 0.5},
            },
            yesno_answers={
                "sft": [{"prediction": "yes", "target": "yes"}] * 9
                + [{"prediction": None, "target": "no"}]
            },
            training={
                "sft": {
                    "metrics": {"eval_loss_before": 3.0, "eval_loss": 0.2},
                    "log_history": history,
                },
                "grounding": {
                    "metrics": {"world_size": 8, "nodes": 2, "global_batch_size": 64},
                    "log_history": history,
                },
            },
            grounding_run="grounding",
        )
    )
    # ranks, nodes and global batch of the runs that recorded them (sft predates the fields)
    assert "global batch" in report.html
    assert (
        '<td class="text">grounding</td><td class="num">8</td><td class="num">2</td>'
        '<td class="num">64</td>'
    ) in report.html
    assert '<td class="text">base</td><td class="num">3.000</td><td class="num">0.500</td>' in (
        report.html
    )
    assert '<td class="text">sft</td><td class="num">0.200</td>' in report.html
    assert set(report.figures) == {"sft_loss"} and 'src="data:image/png;base64,' in report.html
    sft_row = next(row for row in report.headline if row[0] == "sft")
    assert sft_row[-1].startswith("0.900 [")  # yes/no accuracy with its interval


def test_loss_series_reads_trainer_log_history():
    series = loss_series(
        [{"step": 5, "loss": 1.0}, {"step": 5, "eval_loss": 2.0}, {"step": 6, "learning_rate": 1}]
    )
    assert series == {"train loss": [(5, 1.0)], "eval loss": [(5, 2.0)]}


def test_preference_section_shows_final_rewards_and_curves():
    history = [
        {
            "step": 10,
            "loss": 0.6,
            "rewards/chosen": 0.1,
            "rewards/rejected": -0.1,
            "rewards/margins": 0.2,
            "rewards/accuracies": 0.75,
        }
    ]
    report = build_report(
        ReportInputs(
            chair=sampling_chair({"base": 30.0, "nca_beta0.1": 10.0}),
            stages=["base", "nca_beta0.1"],
            training={"nca_beta0.1": {"metrics": {}, "log_history": history}},
            preference_runs={"nca_beta0.1": {"loss_type": "nca", "beta": 0.1}},
            preference_start="base",
        )
    )
    assert "Preference alignment" in report.html and "Supervised fine-tuning" not in report.html
    assert "NCA, β 0.1, from base" in report.html
    assert '<td class="num">0.200</td><td class="num">0.750</td>' in report.html
    assert set(report.figures) == {"preference"}


def test_preference_section_puts_each_run_beside_the_exercise_bar():
    history = [{"step": 1, "loss": 0.6, "rewards/margins": 0.2}]
    runs = {"dpo_beta0.5": 25.0, "nca_beta0.1": 31.0}
    report = build_report(
        ReportInputs(
            chair=sampling_chair({"base": 33.0, **runs}),  # CHAIRi 10.0 each: above 7.8
            stages=["base", *runs],
            training={run: {"metrics": {}, "log_history": history} for run in runs},
            preference_runs={
                "dpo_beta0.5": {"loss_type": "dpo", "beta": 0.5},
                "nca_beta0.1": {"loss_type": "nca", "beta": 0.1, "use_average_logp": True},
            },
            preference_start="base",
        )
    )
    section = report.html[report.html.index('id="preference"') :]
    assert "CHAIRs &lt; 29.5" in section and "7.8" in section
    assert section.count("not met") == 2  # CHAIRi 10.0 misses the bar even where CHAIRs passes
    assert '<td class="num">25.0</td>' in section and '<td class="num">31.0</td>' in section
    assert "NCA, β 0.1, mean log-p, from base" in report.html

    below = sampling_chair({"base": 33.0, "dpo_beta0.5": 25.0})
    below["dpo_beta0.5", "sampling"]["CHAIRi"] = 7.0
    met = build_report(
        ReportInputs(
            chair=below,
            stages=["base", "dpo_beta0.5"],
            training={"dpo_beta0.5": {"metrics": {}, "log_history": history}},
            preference_runs={"dpo_beta0.5": {"loss_type": "dpo", "beta": 0.5}},
            preference_start="base",
        )
    )
    assert ">met<" in met.html and "not met" not in met.html


# --- fake artifacts: grounding, benchmark images, the written files -----------------------------


def png(colour, size=(64, 48)) -> Image.Image:
    return Image.new("RGB", size, colour)


def fake_grounding(root: Path) -> list[Path]:
    """Two stages' results on refcoco val in the grounding rules' format, images under root."""
    png("white").save(root / "img.png")
    paths = []
    for stage, hits in (("base", [True, False, False]), ("grounding", [True, True, False])):
        out = root / "results" / "grounding" / stage
        out.mkdir(parents=True)
        items = [
            {
                "image": "img.png",
                "expression": f"the thing {i}",
                "answer": "<ref>the thing</ref><box>(0,0),(500,500)</box>",
                "gt_box": [0, 0, 32, 24],
                "pred_box": [0, 0, 32, 24] if hit else None,
                "iou": 1.0 if hit else 0.0,
                "hit": hit,
            }
            for i, hit in enumerate(hits)
        ]
        (out / "refcoco_val.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
        metrics = {
            "n": 3,
            "hits": sum(hits),
            "acc_at_0_5": sum(hits) / 3,
            "parse_failures": 3 - sum(hits),
            "parse_failure_rate": (3 - sum(hits)) / 3,
            "mean_iou": sum(hits) / 3,
            "dataset": "refcoco",
            "split": "val",
            "stage": stage,
        }
        paths.append(out / "refcoco_val.json")
        paths[-1].write_text(json.dumps(metrics))
    return paths


def test_grounding_section_from_fake_artifacts(tmp_path):
    splits = read_grounding(fake_grounding(tmp_path))
    assert set(splits) == {("base", "refcoco", "val"), ("grounding", "refcoco", "val")}
    page = render(
        ReportInputs(
            chair={("base", "greedy"): chair_metrics(10.0, [])},
            stages=["base", "grounding"],
            grounding=splits,
            grounding_image_folder=str(tmp_path),
        )
    )
    section = page[page.index('id="grounding"') :]
    assert "0.675" in section and "0.486" in section  # forks' refcoco val, beside ours
    assert '<td class="num">0.667 <span class="ci">' in section  # grounding stage, 2 of 3
    assert section.count("<figure") == 6  # per stage: its hit(s) and misses
    assert "no box parsed" in section
    assert "<b>grounding</b>" in page  # a stage evaluated on grounding only is in the headline
    assert "refcoco val" in page[: page.index('id="grounding"')]


def test_grounding_section_marks_a_val_split_that_is_not_the_standard_one(tmp_path):
    notes = [
        {
            "dataset": "refcoco",
            "split": "val",
            "rows": 8811,
            "standard_rows": 3811,
            "expressions": 17000,
            "skipped": {"undecodable_image": 2},
            "matches_standard_split": False,
            "note": "refcoco val: 8811 rows, the standard split has 3811 objects (+5000)",
        },
        {
            "dataset": "refcoco",
            "split": "testA",
            "rows": 1975,
            "standard_rows": 1975,
            "expressions": 5000,
            "skipped": {},
            "matches_standard_split": True,
        },
    ]
    page = render(
        ReportInputs(
            chair={("base", "greedy"): chair_metrics(10.0, [])},
            stages=["base"],
            grounding=read_grounding(fake_grounding(tmp_path)),
            grounding_image_folder=str(tmp_path),
            data_notes=notes,
        )
    )
    section = page[page.index('id="grounding"') :]
    assert (
        "<b>no</b>: refcoco val: 8811 rows, the standard split has 3811 objects (+5000)" in section
    )
    assert '<td class="num">8,811</td><td class="num">3,811</td>' in section
    assert "undecodable_image 2" in section and '<td class="text">yes</td>' in section


def test_benchmark_thumbnails_read_paths_and_base64(tmp_path):
    png("red").save(tmp_path / "a.png")
    buffer = io.BytesIO()
    Image.effect_noise((300, 200), 50).convert("RGB").save(buffer, format="PNG")  # > 1000 chars
    encoded = base64.b64encode(buffer.getvalue()).decode()
    bench = tmp_path / "bench.jsonl"
    rows = [
        {"image": "a.png", "question": "describe", "image_id": 1},
        {"image": encoded, "question": "describe", "image_id": 2},
    ]
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    thumbnails = benchmark_thumbnails(bench, tmp_path, size=100)
    assert set(thumbnails) == {1, 2}
    shrunk = Image.open(io.BytesIO(base64.b64decode(thumbnails[2].split(",", 1)[1])))
    assert shrunk.size == (100, 67)


def test_collect_and_write_report_files(tmp_path):
    chair_path = tmp_path / "results" / "chair" / "base" / "greedy.json"
    chair_path.parent.mkdir(parents=True)
    chair_path.write_text(json.dumps(chair_metrics(100.0, [4])))
    yesno = tmp_path / "results" / "yesno" / "base.json"
    yesno.parent.mkdir(parents=True)
    yesno.write_text(json.dumps({"accuracy": 0.5, "unparseable_rate": 0.0}))
    yesno.with_name("base.answers.jsonl").write_text(
        '{"prediction": "yes", "target": "yes"}\n{"prediction": "no", "target": "yes"}\n'
    )
    inputs = collect_inputs(
        chair={("base", "greedy"): chair_path},
        stages=["base", "sft"],  # sft configured but produced nothing here: not shown
        yesno=[yesno],
        grounding=fake_grounding(tmp_path),
        grounding_image_folder=tmp_path,
        config={"world": "demo"},
        world="demo",
    )
    out = tmp_path / "report"
    write_report(inputs, out / "index.html", out / "figures", out / "headline.tsv")
    headline = (out / "headline.tsv").read_text().splitlines()
    assert headline[0].split("\t")[:3] == ["stage", "CHAIRs (greedy)", "CHAIRi (greedy)"]
    assert headline[1].startswith("base\t100.0 [100.0, 100.0]")
    assert any(line.startswith("reference: [L] grounding SFT") for line in headline)
    assert (out / "figures").is_dir()
    assert "<b>sft</b>" not in (out / "index.html").read_text()


@pytest.mark.slow
def test_snakemake_native_report_of_the_tiny_run(tiny_run, tmp_path):
    workdir, config = tiny_run
    archive = workdir / "results" / "snakemake-report.zip"
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir)]
    command += ["--configfile", str(config), "--report", str(archive)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=workdir, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    names = zipfile.ZipFile(archive).namelist()
    assert any(name.endswith("headline.tsv") for name in names)
    assert any(name.endswith("sft_loss.png") for name in names)
    assert any(name.endswith("preference.png") for name in names)
