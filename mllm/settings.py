"""The base of the settings dataclasses: one typed, frozen object per config section.

A section may leave keys out: the dataclass's field defaults are the only defaults (the workflow's
rules pass only the keys a config holds, and never restate one). It may not add any: a typo
fails loudly, naming the key and the known ones, instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

S = TypeVar("S")


def reject_unknown_keys(values: Mapping[str, Any], known: Collection[str], where: str) -> None:
    """A typo in a settings section fails loudly, naming the key and the known ones."""
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")


def settings_from_dict(cls: type[S], values: Mapping[str, Any] | None, where: str) -> S:
    """``cls(**values)`` for a settings dataclass, rejecting unknown keys."""
    values = dict(values or {})
    reject_unknown_keys(values, [f.name for f in dataclasses.fields(cls)], where)
    return cls(**values)


def check_choice(name: str, value: Any, choices: Collection[Any]) -> None:
    """A ``ValueError`` naming the setting and its choices unless ``value`` is one of them."""
    if value not in choices:
        raise ValueError(f"{name} {value!r} is not one of {tuple(choices)}")


class Settings:
    """Base of a frozen settings dataclass: ``from_dict`` builds it from a config section."""

    @classmethod
    def from_dict(cls: type[S], values: Mapping[str, Any] | None, *, where: str | None = None) -> S:
        """``cls(**values)``; missing keys take the field defaults, unknown keys are errors."""
        return settings_from_dict(cls, values, where or cls.__name__)
