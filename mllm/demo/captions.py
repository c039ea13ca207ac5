"""The demo world's language: prompts, faithful captions, and hallucinated edits of them.

A caption lists the objects left to right as mentions ("two forks in the center"), using COCO
category words and a few synonyms so CHAIR parses it, from a vocabulary of a few dozen words.
Hallucinations are edits of the mention list (an absent object inserted, or a present object
swapped for its absent partner), rendered in the same style as the faithful caption, so a
hallucinated caption differs from its faithful twin only where it is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mllm.demo.categories import COUNT_WORDS, GLYPHS
from mllm.demo.config import DemoWorldConfig
from mllm.demo.scene import Scene

# The 8 detailed-description questions of objhal_bench (verbatim, as in the exercise's files).
BENCH_PROMPTS = (
    "Provide a thorough description of the given image.",
    "What is this photo about? Please answer in great detail.",
    "Provide a thorough description of the given picture.",
    "Explain the narrative or story that the image seems to convey, detailing each part that contributes to it.",
    "Please provide a detailed description of the image. Describe the visual elements, colors, shapes, textures, and any objects or people present along with the overall mood or atmosphere portrayed in the image.",
    "Please provide a detailed description of the image, including its visual elements, such as colors, shapes, textures, objects, and people.",
    "Provide an intricate description of the image, capturing its visual elements, including colors, shapes, textures, objects, and any people present.",
    "Compose a detailed account of the image, encompassing its visual characteristics, like colors, shapes, textures, objects, and any human subjects, by paying careful attention to the specifics.",
)

# Pre-training asks for captions mostly with short prompts (every prompt token costs compute but
# teaches nothing) and sometimes with the benchmark's long ones, so the base model answers the
# benchmark the way it learned to caption.
SHORT_CAPTION_PROMPTS = (
    "Describe the image.",
    "What is in this picture?",
    "Write a caption for this image.",
    "Describe this image in detail.",
)

YES_NO_QUESTION = "Is there a {noun} in the image? Please answer yes or no."

OPENERS = (
    "The image shows {items}.",
    "This picture shows {items}.",
    "In this image we can see {items}.",
    "A photo of {items}.",
    "There {verb} {items}.",
)

# 3×3 grid of the image, by the object's centre: (row, column) → phrase.
POSITION_PHRASES = (
    ("in the top left corner", "at the top", "in the top right corner"),
    ("on the left", "in the center", "on the right"),
    ("in the bottom left corner", "at the bottom", "in the bottom right corner"),
)
SCATTERED = "in different places"
SYNONYM_PROB = 0.4  # a category with synonyms is called by one of them rather than its COCO name


@dataclass(frozen=True)
class Mention:
    """One noun phrase of a caption: all instances of a category, with where they are."""

    category: str
    count: int
    where: str
    x: float  # horizontal position, orders mentions left to right


@dataclass(frozen=True)
class CaptionStyle:
    """Every random wording choice of one caption, so edits can be rendered in the same words."""

    opener: str
    colour_words: bool
    background_sentence: bool
    nouns: dict[str, tuple[str, str]]  # category → (singular, plural)


def position_phrase(x: float, y: float, size: int) -> str:
    column, row = min(2, int(3 * x / size)), min(2, int(3 * y / size))
    return POSITION_PHRASES[row][column]


def describe(scene: Scene, size: int) -> list[Mention]:
    """The faithful mention list of a scene, left to right."""
    mentions = []
    for category in dict.fromkeys(o.category for o in scene.objects):
        centres = sorted(o.center for o in scene.objects if o.category == category)
        phrases = list(dict.fromkeys(position_phrase(x, y, size) for x, y in centres))
        where = " and ".join(phrases) if len(phrases) <= 2 else SCATTERED
        mentions.append(
            Mention(category, len(centres), where, float(np.mean([x for x, _ in centres])))
        )
    return sorted(mentions, key=lambda m: m.x)


def sample_style(rng: np.random.Generator, cfg: DemoWorldConfig, opener: str) -> CaptionStyle:
    nouns = {}
    for category in cfg.categories:
        forms = GLYPHS[category].nouns
        use_synonym = len(forms) > 1 and rng.random() < SYNONYM_PROB
        nouns[category] = forms[1 + rng.integers(len(forms) - 1)] if use_synonym else forms[0]
    return CaptionStyle(
        opener=opener,
        colour_words=bool(rng.random() < cfg.colour_word_prob),
        background_sentence=bool(rng.random() < cfg.background_sentence_prob),
        nouns=nouns,
    )


def caption_styles(rng: np.random.Generator, cfg: DemoWorldConfig, n: int) -> list[CaptionStyle]:
    """``n`` styles whose openers differ as long as there are enough of them."""
    start = int(rng.integers(len(OPENERS)))
    return [sample_style(rng, cfg, OPENERS[(start + k) % len(OPENERS)]) for k in range(n)]


def render_caption(mentions: list[Mention], style: CaptionStyle, background: str) -> str:
    items = [_noun_phrase(m, style) for m in mentions]
    listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    verb = "is" if mentions[0].count == 1 else "are"
    text = style.opener.format(items=listed, verb=verb)
    if style.background_sentence:
        text += f" The background is {background}."
    return text


def _noun_phrase(mention: Mention, style: CaptionStyle) -> str:
    singular, plural = style.nouns[mention.category]
    glyph = GLYPHS[mention.category]
    words = ["a" if mention.count == 1 else COUNT_WORDS[mention.count]]
    if style.colour_words and glyph.colour_in_text:
        words.append(glyph.colour)
    words += [singular if mention.count == 1 else plural, mention.where]
    return " ".join(words)


def insert_mention(
    rng: np.random.Generator, mentions: list[Mention], category: str, size: int
) -> list[Mention]:
    """Add one instance of an (absent) category at a random place, keeping left-to-right order."""
    x, y = rng.uniform(0.1 * size, 0.9 * size, 2)
    fake = Mention(category, 1, position_phrase(x, y, size), float(x))
    return sorted([*mentions, fake], key=lambda m: m.x)


def swap_mention(mentions: list[Mention], present: str, absent: str) -> list[Mention]:
    """Rename a present category's mention to an absent one (a fine-grained object error)."""
    return [replace(m, category=absent) if m.category == present else m for m in mentions]
