"""What is in an image: categories with a planted co-occurrence prior, and non-crowding boxes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mllm.demo.categories import GLYPHS, partner_map
from mllm.demo.config import DemoWorldConfig

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, exclusive ends


@dataclass(frozen=True)
class SceneObject:
    """One drawn object, as its COCO annotation records it."""

    category: str
    box: Box  # tight box of the drawn glyph (before occlusion)
    area: int = 0  # visible pixels after later glyphs are drawn over it

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    @property
    def box_area(self) -> int:
        x0, y0, x1, y1 = self.box
        return (x1 - x0) * (y1 - y0)


@dataclass(frozen=True)
class Scene:
    """One image: its COCO identity and its objects in drawing order."""

    image_id: int
    split: str
    file_name: str
    background: str
    objects: tuple[SceneObject, ...]

    @property
    def categories(self) -> set[str]:
        """Present categories. Iterate them sorted: set order follows string hashes, which differ
        between processes and would break byte-identical worlds."""
        return {o.category for o in self.objects}

    def count(self, category: str) -> int:
        return sum(o.category == category for o in self.objects)


def sample_categories(
    rng: np.random.Generator,
    cfg: DemoWorldConfig,
    require: str | None = None,
    exclude: str | None = None,
) -> list[str]:
    """One category per object. A newly picked pair member brings its partner along with
    ``partner_prob`` (the planted co-occurrence, allowed to exceed the drawn object count by one);
    an existing category gets another instance with ``repeat_prob`` (counting phrases)."""
    weights = np.asarray(cfg.objects_per_image_weights, dtype=float)
    n_objects = int(rng.choice(len(weights), p=weights / weights.sum())) + 1
    max_objects = len(weights)
    partners = partner_map(cfg.pairs)
    objects: list[str] = []

    def add_fresh(category: str) -> None:
        objects.append(category)
        partner = partners.get(category)
        bring = partner is not None and partner != exclude and partner not in objects
        if bring and len(objects) < max_objects and rng.random() < cfg.partner_prob:
            objects.append(partner)

    if require:
        add_fresh(require)
    while len(objects) < n_objects:
        fresh = [c for c in cfg.categories if c != exclude and c not in objects]
        if objects and (not fresh or rng.random() < cfg.repeat_prob):
            objects.append(objects[rng.integers(len(objects))])
        else:
            add_fresh(fresh[rng.integers(len(fresh))])
    return objects


def place_boxes(
    rng: np.random.Generator, categories: list[str], cfg: DemoWorldConfig
) -> list[tuple[str, Box]]:
    """Random boxes whose pairwise overlap stays below ``max_overlap`` of the smaller box, so every
    object stays visible. Crowded scenes shrink an object before giving up on it; the biggest
    objects are placed (and later drawn) first so small ones land on top."""
    side = cfg.image_size
    lo, hi = (f * side for f in cfg.object_size)
    shapes = []
    for category in categories:
        s = rng.uniform(lo, hi)
        aspect = GLYPHS[category].aspect
        h = min(side - 2, max(6, round(s * aspect**0.5)))
        w = min(side - 2, max(6, round(s / aspect**0.5)))
        shapes.append((category, h, w))
    shapes.sort(key=lambda t: -t[1] * t[2])
    placed: list[tuple[str, Box]] = []
    for category, h, w in shapes:
        for _ in range(4):
            box = _free_spot(rng, h, w, side, [b for _, b in placed], cfg.max_overlap)
            if box:
                placed.append((category, box))
                break
            h, w = max(6, round(h * 0.85)), max(6, round(w * 0.85))
    return placed


def _free_spot(
    rng: np.random.Generator, h: int, w: int, side: int, boxes: list[Box], max_overlap: float
) -> Box | None:
    """The first of up to 30 random positions that overlaps no placed box too much."""
    xs, ys = rng.integers(0, side - w + 1, 30).tolist(), rng.integers(0, side - h + 1, 30).tolist()
    for x0, y0 in zip(xs, ys, strict=True):
        box = (x0, y0, x0 + w, y0 + h)
        if all(
            _intersection(box, other) <= max_overlap * min(h * w, _area(other)) for other in boxes
        ):
            return box
    return None


def _area(box: Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def _intersection(a: Box, b: Box) -> int:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h)
