"""The one error type of mllm.data, a record that cannot become a sample, and the one policy
vocabulary of every reader that may skip such records (config ``on_bad_record``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal, TypeVar, get_args

# "raise": a bad record raises its DataError; "skip": it is left out and counted, never silently.
BadRecordPolicy = Literal["raise", "skip"]
BAD_RECORD_POLICIES: tuple[str, ...] = get_args(BadRecordPolicy)

Item = TypeVar("Item")
Built = TypeVar("Built")


class DataError(ValueError):
    """A record that cannot be turned into a sample.

    The message always starts with the record (``source``, e.g. ``"sample 17"``) so a failure
    in a 100k-record data set points at the line to fix, not just at a shape mismatch.
    """

    def __init__(self, source: str, problem: str):
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


def check_bad_record_policy(policy: str) -> BadRecordPolicy:
    """``policy`` if it is one of ``BAD_RECORD_POLICIES``; a ``ValueError`` naming them otherwise."""
    if policy not in BAD_RECORD_POLICIES:
        raise ValueError(f"on_bad_record {policy!r} is not one of {BAD_RECORD_POLICIES}")
    return policy


def build_each(
    items: Iterable[Item],
    build: Callable[[Item, int], Built],
    on_bad_record: BadRecordPolicy,
    skipped: list[str],
) -> list[tuple[Item, Built]]:
    """``(item, build(item, index))`` for each item, in order. An item whose ``build`` raises a
    ``DataError`` re-raises it (``"raise"``), or is left out with the message appended to
    ``skipped`` (``"skip"``)."""
    kept = []
    for index, item in enumerate(items):
        try:
            built = build(item, index)
        except DataError as error:
            if on_bad_record == "raise":
                raise
            skipped.append(str(error))
            continue
        kept.append((item, built))
    return kept


class BadRecord(DataError):
    """A well-formed record that cannot be a sample, with the ``reason`` a skip policy counts it
    under (``undecodable_image``, ``empty_response`` ...)."""

    def __init__(self, source: str, reason: str, detail: str):
        super().__init__(source, f"{reason}: {detail}")
        self.reason = reason


class SkipTally:
    """The ``on_bad_record`` policy of a converter: ``reject`` raises the ``BadRecord``
    (``"raise"``) or counts it per reason in ``skipped`` (``"skip"``)."""

    def __init__(self, on_bad_record: BadRecordPolicy):
        self.on_bad_record = check_bad_record_policy(on_bad_record)
        self.skipped: dict[str, int] = {}
        self.first: str | None = None  # the first skipped record's message, for the log

    def reject(self, error: BadRecord) -> None:
        if self.on_bad_record == "raise":
            raise error
        self.skipped[error.reason] = self.skipped.get(error.reason, 0) + 1
        self.first = self.first or str(error)
