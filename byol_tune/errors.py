"""Errors that mean "the user asked for something we cannot do", as opposed to bugs.

CLIs catch :class:`ByolTuneError` and print its one-line message with exit code 2; everything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class ByolTuneError(Exception):
    """A user-facing error whose message names the offending key or path and the problem."""


class ConfigError(ByolTuneError, ValueError):
    """A configuration value, key or file is invalid."""


class DataError(ByolTuneError):
    """A dataset path is missing, empty, in the wrong format or unreadable."""


class CheckpointError(ByolTuneError):
    """A checkpoint or exported model file cannot be loaded."""


class DivergedError(ByolTuneError):
    """Training produced NaN or infinite values (a learning rate too high, float16 without scaling)."""


def reason(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
