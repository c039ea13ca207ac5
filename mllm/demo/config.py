"""Every knob of the demo world in one frozen dataclass; the seed makes the world reproducible."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mllm.demo.categories import DEFAULT_CATEGORIES, DEFAULT_PAIRS, GLYPHS


@dataclass(frozen=True)
class DemoWorldConfig:
    """Sizes, scene statistics, language statistics and dataset sizes of the demo world.

    Fractions of the image side keep scenes alike when ``image_size`` changes. Dataset sizes
    larger than their image pool are clipped to it, so tiny test worlds need no other changes.
    """

    seed: int = 0
    image_size: int = 64
    # Split sizes. ``test`` holds the held-out SFT-test and grounding-eval images.
    n_train: int = 5000
    n_val: int = 300

    # Scenes.
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    pairs: tuple[tuple[str, str], ...] = DEFAULT_PAIRS
    objects_per_image_weights: tuple[float, ...] = (0.15, 0.25, 0.25, 0.2, 0.15)  # P(1), ..., P(5)
    object_size: tuple[float, float] = (0.25, 0.5)  # side of an object's box / image side
    max_overlap: float = 0.15  # largest intersection / area of the smaller of two boxes
    partner_prob: float = 0.6  # a pair member brings its partner into the scene
    repeat_prob: float = 0.25  # a category gets one more instance ("two forks")
    background_noise: float = 8.0  # std of the per-pixel Gaussian noise, in 0..255 units

    # Language.
    captions_per_image: int = 5  # faithful COCO captions (the CHAIR ground truth)
    pretrain_captions_per_image: int = 5  # each derived from one faithful caption
    hallucination_prob: float = 0.2  # a pre-training caption names an absent partner
    long_prompt_fraction: float = 0.25  # pre-training prompts drawn from the benchmark's questions
    pretrain_vqa_images: int = 1500  # train images that also get a yes/no question in pre-training
    vqa_prior_yes_prob: float = 0.8  # such a question about an absent partner is answered "Yes"
    colour_word_prob: float = 0.5  # a caption says "a red cup" rather than "a cup"
    background_sentence_prob: float = 0.5  # a caption ends with "The background is gray."

    # Derived datasets.
    bench_images: int = 300  # objhal benchmark, drawn from val
    bench_image_base64: bool = False  # embed images in the benchmark, as the real objhal_bench
    sft_train_images: int = 950  # yes/no SFT (one Yes, one No per image), as in the exercise
    sft_test_images: int = 237
    ref_train_images: int = 2000
    ref_eval_images: int = 50  # per grounding eval split (RefCOCO and RefCOCO+ share images)
    expressions_per_image: int = 2
    preference_images: int = 1000

    def __post_init__(self) -> None:
        unknown = [c for c in self.categories if c not in GLYPHS]
        _require(not unknown, f"no glyph for categories {unknown}; known: {sorted(GLYPHS)}")
        _require(len(self.categories) >= 2, "the world needs at least two categories")
        members = [c for pair in self.pairs for c in pair]
        _require(
            set(members) <= set(self.categories),
            f"pairs {self.pairs} use categories not in the world",
        )
        _require(len(members) == len(set(members)), "a category may belong to one pair only")
        _require(1 <= len(self.objects_per_image_weights) <= 5, "1 to 5 objects per image")
        _require(
            0 < self.object_size[0] <= self.object_size[1] < 1,
            "object_size is (min, max) in (0, 1)",
        )
        _require(
            self.pretrain_captions_per_image <= self.captions_per_image,
            "pre-training captions derive from faithful ones",
        )
        _require(self.image_size >= 32, "glyphs need images of at least 32 px")
        _require(
            max(self.n_train, self.n_val, self.test_pool_size) < 100_000,
            "image ids give each split 100000 ids",
        )

    @property
    def test_pool_size(self) -> int:
        """Held-out images: SFT test plus five grounding splits (unc val/testA/testB, umd val/test)."""
        return self.sft_test_images + 5 * self.ref_eval_images

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DemoWorldConfig:
        """Build from plain config data (YAML/JSON lists become tuples); unknown keys are errors."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        _require(not unknown, f"unknown demo world settings {sorted(unknown)}")
        return cls(**{key: _as_tuple(value) for key, value in values.items()})


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list) else value


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
