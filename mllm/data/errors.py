"""The one error type of mllm.data, a record that cannot become a sample, and the one policy
vocabulary of every reader that may skip such records (config ``on_bad_record``)."""

from __future__ import annotations

from typing import Literal, get_args

# "raise": a bad record raises its DataError; "skip": it is left out and counted, never silently.
BadRecordPolicy = Literal["raise", "skip"]
BAD_RECORD_POLICIES: tuple[str, ...] = get_args(BadRecordPolicy)


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
