"""The one error type of mllm.data: a record that cannot become a sample."""

from __future__ import annotations


class DataError(ValueError):
    """A record that cannot be turned into a sample.

    The message always starts with the record (``source``, e.g. ``"sample 17"``) so a failure
    in a 100k-record data set points at the line to fix, not just at a shape mismatch.
    """

    def __init__(self, source: str, problem: str):
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem
