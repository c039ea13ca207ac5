"""The demo world's object categories: real COCO names drawn as distinct synthetic glyphs.

Every category has its own shape and shares its colour with exactly one other category (fill
patterns are shared more widely), so telling categories apart takes shape as well as colour.
Names are COCO category names (CHAIR node words), so CHAIR, yes/no questions and grounding treat
the demo exactly like COCO.
"""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[int, int, int]

COLOURS: dict[str, RGB] = {
    "red": (215, 45, 45),
    "green": (50, 185, 70),
    "blue": (55, 100, 235),
    "yellow": (235, 210, 50),
    "purple": (160, 70, 210),
    "white": (235, 235, 235),
}

# Backgrounds are dark so every object colour stands out; the name appears in some captions.
BACKGROUNDS: dict[str, RGB] = {
    "gray": (70, 70, 70),
    "dark blue": (30, 40, 85),
    "dark green": (30, 70, 40),
    "brown": (75, 50, 35),
}


@dataclass(frozen=True)
class Glyph:
    """How one category looks (shape, colour, fill pattern, height/width ratio) and is named."""

    shape: str
    colour: str
    pattern: str
    aspect: float
    nouns: tuple[tuple[str, str], ...]  # (singular, plural); the COCO name first, then synonyms
    colour_in_text: bool = True  # "a white person" reads wrong; people are described without it


GLYPHS: dict[str, Glyph] = {
    "person": Glyph(
        "ellipse",
        "white",
        "solid",
        1.6,
        (("person", "people"), ("man", "men"), ("woman", "women")),
        colour_in_text=False,
    ),
    "dog": Glyph("rectangle", "yellow", "striped", 0.75, (("dog", "dogs"),)),
    "cat": Glyph("triangle", "purple", "solid", 1.0, (("cat", "cats"),)),
    "bird": Glyph("inverted_triangle", "blue", "solid", 0.9, (("bird", "birds"),)),
    "car": Glyph("frame", "red", "solid", 0.7, (("car", "cars"),)),
    "bicycle": Glyph("ring", "green", "solid", 1.0, (("bicycle", "bicycles"), ("bike", "bikes"))),
    "fork": Glyph("tee", "white", "checkered", 1.8, (("fork", "forks"),)),
    "knife": Glyph("hourglass", "red", "striped", 1.8, (("knife", "knives"),)),
    "cup": Glyph("dome", "blue", "checkered", 1.0, (("cup", "cups"),)),
    "dining table": Glyph(
        "plus", "yellow", "solid", 0.6, (("dining table", "dining tables"), ("table", "tables"))
    ),
    "bottle": Glyph("diamond", "green", "striped", 1.6, (("bottle", "bottles"),)),
    "chair": Glyph("x_cross", "purple", "checkered", 1.0, (("chair", "chairs"),)),
}

DEFAULT_CATEGORIES: tuple[str, ...] = tuple(GLYPHS)

# Pairs that co-occur in the world; their language prior is what the base model will hallucinate.
DEFAULT_PAIRS: tuple[tuple[str, str], ...] = (
    ("fork", "knife"),
    ("cup", "dining table"),
    ("dog", "person"),
    ("car", "bicycle"),
)

COCO_CATEGORY_IDS: dict[str, int] = {
    "person": 1,
    "bicycle": 2,
    "car": 3,
    "bird": 16,
    "cat": 17,
    "dog": 18,
    "bottle": 44,
    "fork": 48,
    "knife": 49,
    "cup": 47,
    "chair": 62,
    "dining table": 67,
}

SUPERCATEGORIES: dict[str, str] = {
    "person": "person",
    "bicycle": "vehicle",
    "car": "vehicle",
    "bird": "animal",
    "cat": "animal",
    "dog": "animal",
    "bottle": "kitchen",
    "fork": "kitchen",
    "knife": "kitchen",
    "cup": "kitchen",
    "chair": "furniture",
    "dining table": "furniture",
}

COUNT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def partner_map(pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Both directions of every co-occurrence pair."""
    return {a: b for pair in pairs for a, b in (pair, pair[::-1])}


def noun_to_category() -> dict[str, str]:
    """Every singular and plural noun the generator writes, mapped to its category."""
    return {word: name for name, glyph in GLYPHS.items() for forms in glyph.nouns for word in forms}
