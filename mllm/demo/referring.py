"""RefCOCO-style referring expressions that pick out exactly one object.

Expressions come from a small closed grammar, so they can be parsed back and resolved against a
scene: an expression is kept only when its *plausible* referents (with margins on positions,
sizes and distances, so near-ties count as ambiguous) are exactly its target. Tests resolve the
written files the same way.

Styles follow the real datasets: ``refcoco`` is short and may use location words ("the left
cup"); ``refcoco+`` avoids absolute location ("the bigger cup", "the cup next to the fork");
``refcocog`` is longer and relational ("the red cup that is to the left of the fork").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from mllm.demo.categories import COLOURS, GLYPHS, noun_to_category
from mllm.demo.scene import Scene, SceneObject

STYLES = ("refcoco", "refcoco+", "refcocog")
POSITION_MARGIN = 0.1  # of the image side: closer centres are a tie for left/right/top/bottom
SIZE_RATIO = 1.3  # areas closer than this are a tie for bigger/smaller
DISTANCE_RATIO = 1.5  # distances closer than this are a tie for "next to"

EXTREME_SUFFIX = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
}
SIZES = ("bigger", "biggest", "smaller", "smallest")
SIDES = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}
NEAR = ("next to", "closest to")
# (axis, sign): sign * centre[axis] is smallest for the object furthest in that direction.
DIRECTIONS = {
    "left": (0, 1),
    "right": (0, -1),
    "top": (1, 1),
    "bottom": (1, -1),
    "above": (1, 1),
    "below": (1, -1),
}


@dataclass(frozen=True)
class Referral:
    """What an expression says: a category (optionally with its colour) and at most one predicate.

    ``kind`` is ``unique`` (no predicate), ``extreme`` (value: left/right/top/bottom), ``size``
    (bigger/biggest/smaller/smallest), ``near`` or ``side`` (value: left/right/above/below),
    the last two relative to the only object of ``anchor``'s category.
    """

    category: str
    colour: str = ""
    kind: str = "unique"
    value: str = ""
    anchor: str = ""


def referents(ref: Referral, objects: tuple[SceneObject, ...], size: int) -> list[int]:
    """Indices of the objects a careful reader could take the expression to mean."""
    if ref.colour and ref.colour != GLYPHS[ref.category].colour:
        return []
    candidates = [i for i, o in enumerate(objects) if o.category == ref.category]
    margin = POSITION_MARGIN * size
    if ref.kind == "unique":
        return candidates
    if ref.kind == "extreme":
        axis, sign = DIRECTIONS[ref.value]
        key = {i: sign * objects[i].center[axis] for i in candidates}
        best = min(key.values(), default=0.0)
        return [i for i in candidates if key[i] <= best + margin]
    if ref.kind == "size":
        sign = 1 if ref.value in ("bigger", "biggest") else -1
        key = {i: objects[i].box_area ** sign for i in candidates}
        best = max(key.values(), default=0.0)
        return [i for i in candidates if key[i] * SIZE_RATIO >= best]
    anchors = [o for o in objects if o.category == ref.anchor]
    if not anchors or ref.anchor == ref.category:
        return []
    if ref.kind == "near":
        distance = {i: min(_distance(objects[i], a) for a in anchors) for i in candidates}
        best = min(distance.values(), default=0.0)
        return [i for i in candidates if distance[i] <= DISTANCE_RATIO * best]
    axis, sign = DIRECTIONS[ref.value]

    def offset(i: int) -> float:  # > 0 when object i lies on the named side of some anchor
        return max(sign * (a.center[axis] - objects[i].center[axis]) for a in anchors)

    clearly = [i for i in candidates if offset(i) >= margin]
    return [i for i in candidates if offset(i) > -margin] if clearly else []


def _distance(a: SceneObject, b: SceneObject) -> float:
    (ax, ay), (bx, by) = a.center, b.center
    return float(np.hypot(ax - bx, ay - by))


def candidate_referrals(target: int, scene: Scene, style: str) -> list[Referral]:
    """Every referral of the style that *could* describe the target (validity is checked later)."""
    objects = scene.objects
    category = objects[target].category
    n_same = scene.count(category)
    refs = []
    if n_same == 1:
        refs.append(Referral(category))
    if n_same >= 2 and style in ("refcoco", "refcocog"):
        refs += [Referral(category, kind="extreme", value=d) for d in EXTREME_SUFFIX]
    if n_same >= 2 and style in ("refcoco", "refcoco+"):
        bigger, smaller = ("bigger", "smaller") if n_same == 2 else ("biggest", "smallest")
        refs += [Referral(category, kind="size", value=v) for v in (bigger, smaller)]
    anchors = [c for c in sorted(scene.categories) if c != category and scene.count(c) == 1]
    others = [o for i, o in enumerate(objects) if i != target]
    neighbour = min(others, key=lambda o: _distance(o, objects[target]), default=None)
    if style != "refcoco" and neighbour and neighbour.category in anchors:
        refs.append(Referral(category, kind="near", anchor=neighbour.category))
    if style == "refcocog":
        refs += [Referral(category, kind="side", value=s, anchor=a) for a in anchors for s in SIDES]
    return refs


def refer(rng: np.random.Generator, target: int, scene: Scene, style: str, size: int) -> str | None:
    """A random unambiguous expression for the target in this style, or None if there is none."""
    valid = [
        r
        for r in candidate_referrals(target, scene, style)
        if referents(r, scene.objects, size) == [target]
    ]
    if not valid:
        return None
    ref = valid[rng.integers(len(valid))]
    glyph = GLYPHS[ref.category]
    if glyph.colour_in_text and rng.random() < 0.5:
        ref = replace(ref, colour=glyph.colour)
    return render(rng, ref, style)


def render(rng: np.random.Generator, ref: Referral, style: str) -> str:
    noun = _pick_noun(rng, ref.category)
    head = f"{ref.colour} {noun}" if ref.colour else noun
    long_form = style == "refcocog"
    that_is = "that is " if long_form else ""
    if ref.kind == "unique":
        return f"the {head} in the picture" if long_form else f"the {head}"
    if ref.kind == "extreme":
        if not long_form and rng.random() < 0.5:
            return f"the {ref.value} {head}"
        return f"the {head} {that_is}{EXTREME_SUFFIX[ref.value]}"
    if ref.kind == "size":
        return f"the {ref.value} {head}"
    anchor = _pick_noun(rng, ref.anchor)
    relation = NEAR[rng.integers(len(NEAR))] if ref.kind == "near" else SIDES[ref.value]
    return f"the {head} {that_is}{relation} the {anchor}"


def _pick_noun(rng: np.random.Generator, category: str) -> str:
    forms = GLYPHS[category].nouns
    return forms[rng.integers(len(forms))][0]


def _alternatives(words) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_NOUNS = _alternatives(w for forms in (g.nouns for g in GLYPHS.values()) for w, _ in forms)
_GRAMMAR = re.compile(
    rf"^the (?:(?P<mod>{_alternatives(tuple(EXTREME_SUFFIX) + SIZES)}) )?(?:(?P<colour>{_alternatives(COLOURS)}) )?"
    rf"(?P<noun>{_NOUNS})(?: in the picture| (?:that is )?(?:(?P<suffix>{_alternatives(EXTREME_SUFFIX.values())})"
    rf"|(?P<relation>{_alternatives(NEAR + tuple(SIDES.values()))}) the (?P<anchor>{_NOUNS})))?$"
)


def parse(expression: str) -> Referral:
    """Invert :func:`render` (raises ValueError on text outside the grammar)."""
    match = _GRAMMAR.match(expression)
    if not match:
        raise ValueError(f"not a demo referring expression: {expression!r}")
    to_category = noun_to_category()
    category, colour = to_category[match["noun"]], match["colour"] or ""
    mod, suffix, relation = match["mod"], match["suffix"], match["relation"]
    if relation:
        anchor = to_category[match["anchor"]]
        if relation in NEAR:
            return Referral(category, colour, "near", anchor=anchor)
        side = next(s for s, phrase in SIDES.items() if phrase == relation)
        return Referral(category, colour, "side", side, anchor)
    if suffix:
        return Referral(
            category, colour, "extreme", next(d for d, p in EXTREME_SUFFIX.items() if p == suffix)
        )
    if mod in SIZES:
        return Referral(category, colour, "size", mod)
    if mod:
        return Referral(category, colour, "extreme", mod)
    return Referral(category, colour)
