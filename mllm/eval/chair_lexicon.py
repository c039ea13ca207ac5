"""The CHAIR vocabulary: COCO object words, their node words and the double words.

The word lists live in ``mllm/resources`` byte-for-byte as the exercise's chair.py embeds
them; the special double-word rules that chair.py hard-codes are the constants below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from types import MappingProxyType

# 'baby bird' must not fire 'person' (baby is a person synonym): the qualifier is dropped.
QUALIFIED_ANIMALS = (
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "animal",
    "cub",
)
ANIMAL_QUALIFIERS = ("baby", "adult")
# 'passenger jet' must not fire 'person' either.
PASSENGER_VEHICLES = ("jet", "train")
# Applied last, so 'bow tie' overrides its self-mapping from the double-word list.
SPECIAL_DOUBLE_WORDS = (("bow tie", "tie"), ("toilet seat", "toilet"), ("wine glas", "wine glass"))


@dataclass(frozen=True)
class ChairLexicon:
    """What CHAIR matches: ``objects`` (every COCO word and synonym), ``node_of``
    (synonym → COCO category) and ``double_words`` (lemma pair → merged word)."""

    objects: frozenset[str]
    node_of: Mapping[str, str]
    double_words: Mapping[str, str]

    def words(self) -> frozenset[str]:
        """Every single word the lexicon can match, alone or inside a double word."""
        phrases = [*self.objects, *self.double_words, *self.double_words.values()]
        return frozenset(word for phrase in phrases for word in phrase.split())


def _data_lines(resource: str) -> list[str]:
    text = files("mllm.resources").joinpath(resource).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


@cache
def default_lexicon() -> ChairLexicon:
    """The exercise's lexicon (80 categories, 55 double words)."""
    objects: set[str] = set()
    node_of: dict[str, str] = {}
    # chair.py splits the stripped line on ', ' exactly (see the resource header).
    for entries in (line.strip().split(", ") for line in _data_lines("chair_synonyms.txt")):
        objects.update(entries)
        node_of.update({synonym: entries[0] for synonym in entries})

    double_words = {
        phrase.strip(): phrase.strip() for phrase in _data_lines("chair_double_words.txt")
    }
    for animal in QUALIFIED_ANIMALS:
        double_words.update({f"{qualifier} {animal}": animal for qualifier in ANIMAL_QUALIFIERS})
    double_words.update({f"passenger {vehicle}": vehicle for vehicle in PASSENGER_VEHICLES})
    double_words.update(SPECIAL_DOUBLE_WORDS)
    return ChairLexicon(
        frozenset(objects), MappingProxyType(node_of), MappingProxyType(double_words)
    )
