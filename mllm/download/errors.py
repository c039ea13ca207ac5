"""The one error of mllm.download."""

from __future__ import annotations


class FetchError(RuntimeError):
    """A source that could not be fetched, or does not hold what it should; the message names it."""
