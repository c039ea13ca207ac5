"""Published numbers the report shows beside its own, for context: the exercise's targets and
its forks' results on the real 8B model and real data (EXERCISE_SPEC §4, §6)."""

from __future__ import annotations

from collections.abc import Sequence

CHAIR_COLUMNS = ("CHAIRs", "CHAIRi", "Recall", "Len")
YESNO = ("yes/no", "accuracy")  # the headline column of yes/no accuracy


def _chair(strategy: str, values: Sequence) -> dict:
    return {(strategy, column): value for column, value in zip(CHAIR_COLUMNS, values, strict=True)}


# The exercise's bar after preference training (EXERCISE_SPEC §4.1): each metric strictly below.
PREFERENCE_BAR = {"CHAIRs": 29.5, "CHAIRi": 7.8}

# Placed in the headline columns they belong to: (strategy, metric) for CHAIR, YESNO for yes/no
# accuracy.
HEADLINE_REFERENCES = {
    "exercise target, base": _chair("sampling", (32.7, 8.5, 61.7, 126.0)),
    "exercise bar after preference": _chair(
        "sampling", (*(f"< {PREFERENCE_BAR[m]}" for m in ("CHAIRs", "CHAIRi")), "", "")
    ),
    "[L] base": {
        **_chair("sampling", (29.7, 9.2, 62.3, 126.4)),
        **_chair("greedy", (26.3, 7.3, 60.5, 131.3)),
        **_chair("beam", (24.3, 6.9, 63.3, 135.6)),
        YESNO: "0.693–0.696",
    },
    "[L] LoRA SFT runs": {YESNO: "0.81–0.835"},
    "[L] full FT (lr 2e-6, batch 32, 100 steps)": {YESNO: "0.898"},
    "[L] SFT + NCA β .1": _chair("sampling", (24.3, 7.3, 62.6, 126.0)),
    "[Q0] DPO β .5": _chair("greedy", (18.0, 5.1, 54.9, 108.9)),
}

# Grounding Precision@1 (Acc@0.5) per (dataset, split): [L] trained on the 1000 grid, [Q0] on raw
# pixel boxes.
REFERENCE_LABELS = ("[L] 1000 grid", "[Q0] raw pixels")
REFERENCE_ACCURACY = {
    (dataset, split): {"[L] 1000 grid": grid, "[Q0] raw pixels": pixels}
    for dataset, split, grid, pixels in (
        ("refcoco", "val", 0.675, 0.486),
        ("refcoco", "testA", 0.760, 0.557),
        ("refcoco", "testB", 0.597, 0.399),
        ("refcoco+", "val", 0.624, 0.426),
        ("refcoco+", "testA", 0.710, 0.500),
        ("refcoco+", "testB", 0.537, 0.323),
        ("refcocog", "val", 0.608, 0.406),
        ("refcocog", "test", 0.608, 0.406),
    )
}
# The headline's grounding reference rows, by their REFERENCE_ACCURACY label.
GROUNDING_REFERENCE_ROWS = {
    "[L] grounding SFT, 1000 grid": "[L] 1000 grid",
    "[Q0] grounding SFT, raw pixels": "[Q0] raw pixels",
}
