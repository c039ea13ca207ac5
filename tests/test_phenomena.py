"""bench/phenomena.py: the seeded configs it runs, the phenomena it reads and its table."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("phenomena", REPO / "bench" / "phenomena.py")
phenomena = sys.modules.setdefault("phenomena", importlib.util.module_from_spec(SPEC))
SPEC.loader.exec_module(phenomena)  # registered first: its dataclasses look their module up
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_a_seeded_config_changes_every_training_seed_and_the_threads_only():
    seeded = phenomena.seeded_config(DEFAULT, seed=7, threads=1)
    training = [
        seeded["vision_warmup"]["seed"],
        seeded["base_model"]["seed"],
        *(run["training"]["seed"] for run in seeded["sft"].values()),
        seeded["preference"]["training"]["seed"],
        seeded["grounding"]["training"]["seed"],
    ]
    assert training == [7] * len(training)
    assert seeded["compute"]["threads"] == seeded["compute"]["eval_threads"] == 1
    # evaluation seeds and the world stay the default's
    assert seeded["decoding"]["seed"] == DEFAULT["decoding"]["seed"]
    assert seeded["demo_world"] == DEFAULT["demo_world"]
    assert DEFAULT["base_model"]["seed"] == 0  # the default itself is untouched


def test_partner_share_counts_hallucinations_whose_planted_partner_is_in_the_image():
    chair = {
        "per_caption": [
            # knife is fork's partner and a fork is there: planted
            {"gt_objects": ["fork"], "hallucinated_words": [["knife", "knife"]]},
            # a cat has no partner: not planted
            {"gt_objects": ["fork"], "hallucinated_words": [["cat", "cat"]]},
            # person is dog's partner, but no dog is there: not planted
            {"gt_objects": ["cup"], "hallucinated_words": [["man", "person"]]},
            {"gt_objects": ["dog"], "hallucinated_words": [["man", "person"]]},
        ]
    }
    pairs = (("fork", "knife"), ("dog", "person"))
    assert phenomena.partner_share(chair, pairs) == 0.5


def write_run(workdir: Path, base_chairi: float, nca_chairi: float) -> None:
    """The metric files one run leaves, with every phenomenon but the NCA cut fixed to hold."""

    def chair(stage: str, chairi: float, recall: float) -> None:
        path = workdir / "results" / "chair" / stage / "sampling.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        captions = [{"gt_objects": ["fork"], "hallucinated_words": [["knife", "knife"]]}]
        path.write_text(json.dumps({"CHAIRi": chairi, "Recall": recall, "per_caption": captions}))

    beta = DEFAULT["preference"]["betas"][0]
    chair("base", base_chairi, 90.0)
    chair(f"dpo_nll_beta{beta}", 1.0, 85.0)
    chair(f"nca_beta{beta}", nca_chairi, 85.0)
    chair(f"dpo_beta{beta}", 1.0, 30.0)
    chair("sft", 5.0, 88.0)
    chair("sft_full", 5.0, 1.0)
    for stage, accuracy in (("base", 0.5), ("sft", 0.7), ("sft_full", 0.65)):
        path = workdir / "results" / "yesno" / f"{stage}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"accuracy": accuracy}))
    for dataset, splits in DEFAULT["grounding"]["splits"].items():
        for split in splits:
            path = workdir / "results" / "grounding" / "grounding" / f"{dataset}_{split}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"acc_at_0_5": 0.8, "parse_failure_rate": 0.0}))


def test_the_table_holds_a_phenomenon_only_when_every_run_holds_it(tmp_path):
    runs = [(0, 1), (1, 1)]
    write_run(tmp_path / "seed0_threads1", base_chairi=10.0, nca_chairi=2.0)  # NCA cuts 80 %
    write_run(tmp_path / "seed1_threads1", base_chairi=10.0, nca_chairi=7.0)  # only 30 %
    values = phenomena.measure(runs, DEFAULT, tmp_path)
    text, summary = phenomena.table(runs, values, {}, "0123456789ab")
    rows = {row["name"]: row for row in summary["phenomena"]}
    nca = rows["NCA CHAIRi cut (% of base)"]
    assert (nca["min"], nca["max"], nca["holds"]) == (30.0, 80.0, False)
    assert rows["DPO+NLL CHAIRi cut (% of base)"]["holds"]
    assert rows["base hallucinations that are planted partners (%)"]["mean"] == 100.0
    held = sum(row["holds"] for row in summary["phenomena"])
    assert held == len(phenomena.PHENOMENA) - 1
    assert f"{held} of {len(phenomena.PHENOMENA)} phenomena hold in every run" in text
    assert "hash `0123456789ab`" in text and summary["config_hash"] == "0123456789ab"
    assert "| NCA CHAIRi cut (% of base) | ≥ 40 | 55.00 | 30.00 | 80.00 | **no** |" in text


@pytest.mark.slow
def test_the_checked_hash_is_the_one_a_report_of_that_config_shows(tiny_run):
    """The report tells a checked recipe by its config hash: the bench must hash the config as the
    report sees it (validated by Snakemake, schema defaults filled in)."""
    workdir, config = tiny_run
    page = (workdir / "results" / "report" / "index.html").read_text()
    shown = re.search(r"produced this report \(hash <code>([0-9a-f]{12})</code>\)", page)
    assert shown, "the report shows no config hash"
    assert phenomena.checked_config_hash(yaml.safe_load(config.read_text())) == shown.group(1)
