"""The HTML report: tables from metric artifacts, highlighted hallucinations, optional sections."""

from __future__ import annotations

from mllm.report.html import ReportInputs, render
from mllm.report.plots import loss_series


def chair_metrics(chairs: float, hallucinated: list[int]) -> dict:
    return {
        "CHAIRs": chairs,
        "CHAIRi": 10.0,
        "Recall": 80.0,
        "Len": 25.0,
        "analyzer": {"name": "offline"},
        "per_caption": [
            {
                "image_id": 7,
                "tokens": ["a", "dog", "and", "a", "knife", "."],
                "hallucinated_indices": hallucinated,
                "gt_objects": ["dog"],
            }
        ],
    }


def test_chair_table_highlights_and_references():
    page = render(
        ReportInputs(chair={("base", "greedy"): chair_metrics(12.5, [4])}, stages=["base"])
    )
    assert "<td>base · greedy</td><td>12.5</td>" in page
    assert '<span class="hallucinated">knife</span>' in page
    assert "exercise target (base)" in page  # reference rows beside ours
    assert "Supervised fine-tuning" not in page  # a stage that did not run is absent


def test_sft_section_shows_base_and_runs_with_loss_curves():
    history = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}, {"step": 2, "eval_loss": 1.5}]
    page = render(
        ReportInputs(
            chair={
                ("base", "sampling"): chair_metrics(30.0, []),
                ("sft", "sampling"): chair_metrics(20.0, []),
            },
            stages=["base", "sft"],
            yesno={
                "base": {"accuracy": 0.5, "unparseable_rate": 0.1},
                "sft": {"accuracy": 0.9, "unparseable_rate": 0.0},
            },
            training={
                "sft": {
                    "metrics": {"eval_loss_before": 3.0, "eval_loss": 0.2},
                    "log_history": history,
                }
            },
        )
    )
    assert "<td>base</td><td>3.000</td><td>0.500</td>" in page
    assert "<td>sft</td><td>0.200</td><td>0.900</td>" in page
    assert 'src="data:image/png;base64,' in page


def test_loss_series_reads_trainer_log_history():
    series = loss_series(
        [{"step": 5, "loss": 1.0}, {"step": 5, "eval_loss": 2.0}, {"step": 6, "learning_rate": 1}]
    )
    assert series == {"train loss": [(5, 1.0)], "eval loss": [(5, 2.0)]}


def test_preference_section_compares_start_and_runs():
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
    page = render(
        ReportInputs(
            chair={
                ("base", "sampling"): chair_metrics(30.0, []),
                ("nca_beta0.1", "sampling"): chair_metrics(10.0, []),
            },
            stages=["base", "nca_beta0.1"],
            training={"nca_beta0.1": {"metrics": {}, "log_history": history}},
            preference_runs=["nca_beta0.1"],
            preference_start="base",
        )
    )
    assert "Preference alignment" in page and "Supervised fine-tuning" not in page
    assert "<td>base (start)</td><td>30.0</td>" in page
    assert "<td>nca_beta0.1</td><td>10.0</td>" in page and "<td>0.200</td><td>0.75</td>" in page
