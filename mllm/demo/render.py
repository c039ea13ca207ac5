"""Drawing scenes with numpy: glyph masks, fill patterns, noisy backgrounds."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from mllm.demo.categories import BACKGROUNDS, COLOURS, GLYPHS
from mllm.demo.scene import Box, SceneObject

# Each shape is a predicate on box coordinates u (right) and v (down), both in [-1, 1].
SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "ellipse": lambda u, v: u**2 + v**2 <= 1,
    "rectangle": lambda u, v: np.ones(np.broadcast(u, v).shape, dtype=bool),
    "triangle": lambda u, v: v >= 2 * np.abs(u) - 1,
    "inverted_triangle": lambda u, v: -v >= 2 * np.abs(u) - 1,
    "diamond": lambda u, v: np.abs(u) + np.abs(v) <= 1.05,
    "plus": lambda u, v: (np.abs(u) <= 0.34) | (np.abs(v) <= 0.34),
    "ring": lambda u, v: (u**2 + v**2 <= 1) & (u**2 + v**2 >= 0.4),
    "frame": lambda u, v: np.maximum(np.abs(u), np.abs(v)) >= 0.5,
    "hourglass": lambda u, v: np.abs(u) <= np.abs(v) + 0.15,
    "x_cross": lambda u, v: np.abs(np.abs(u) - np.abs(v)) <= 0.4,
    "tee": lambda u, v: (v <= -0.4) | (np.abs(u) <= 0.32),
    "dome": lambda u, v: u**2 + ((v - 1) / 2) ** 2 <= 1,
}

# Fill patterns scale the colour of the glyph's pixels (row i, column j of its box); a 2 px period
# stays visible on the smallest glyphs.
PATTERNS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "solid": lambda i, j: np.ones(i.shape),
    "striped": lambda i, j: np.where((i // 2) % 2 == 0, 1.0, 0.5),
    "checkered": lambda i, j: np.where(((i // 2) + (j // 2)) % 2 == 0, 1.0, 0.5),
}


def glyph_mask(shape: str, h: int, w: int) -> np.ndarray:
    """Boolean h×w mask of a shape filling its box (sampled at pixel centres)."""
    v = (np.arange(h) + 0.5) / h * 2 - 1
    u = (np.arange(w) + 0.5) / w * 2 - 1
    return SHAPES[shape](u[None, :], v[:, None])


@lru_cache(maxsize=4096)
def glyph_pixels(category: str, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and RGB values of a category's glyph in an h×w box (cached: boxes repeat)."""
    glyph = GLYPHS[category]
    i, j = np.nonzero(glyph_mask(glyph.shape, h, w))
    colour = np.asarray(COLOURS[glyph.colour], dtype=np.float32)
    return i, j, PATTERNS[glyph.pattern](i, j).astype(np.float32)[:, None] * colour[None, :]


def draw_scene(
    rng: np.random.Generator,
    size: int,
    background: str,
    placed: list[tuple[str, Box]],
    noise: float,
) -> tuple[np.ndarray, list[SceneObject]]:
    """Render glyphs in order over a shaded background, then add sensor noise.

    Returns the uint8 RGB image and the objects with tight boxes and visible areas (later glyphs
    occlude earlier ones), which is what the COCO annotations record.
    """
    image = _background(rng, size, BACKGROUNDS[background])
    owner = np.full((size, size), -1)
    tight_boxes = []
    for index, (category, (x0, y0, x1, y1)) in enumerate(placed):
        i, j, rgb = glyph_pixels(category, y1 - y0, x1 - x0)
        image[y0 + i, x0 + j] = rgb * np.float32(rng.uniform(0.85, 1.1))
        owner[y0 + i, x0 + j] = index
        tight_boxes.append(
            (x0 + int(j.min()), y0 + int(i.min()), x0 + int(j.max()) + 1, y0 + int(i.max()) + 1)
        )
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(noise)
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    areas = np.bincount(owner[owner >= 0], minlength=len(placed))
    objects = [
        SceneObject(category, box, int(area))
        for (category, _), box, area in zip(placed, tight_boxes, areas, strict=True)
    ]
    return pixels, objects


def _background(rng: np.random.Generator, size: int, base: tuple[int, int, int]) -> np.ndarray:
    """Base colour with a random linear shading gradient, so backgrounds are not one flat colour."""
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    gx, gy = rng.uniform(-15, 15, 2).astype(np.float32)
    shading = gx * ramp[None, :] + gy * ramp[:, None]
    base_colour = (np.asarray(base) + rng.uniform(-10, 10, 3)).astype(np.float32)
    return base_colour[None, None, :] + shading[:, :, None]
