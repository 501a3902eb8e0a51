"""Errors that mean "the user asked for something we cannot do", as opposed to bugs.

CLIs catch :class:`ByolTuneError` and print its one-line message with exit code 2; everything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import re


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


_RAISED = re.compile(r"byol_tune\.errors\.(\w+): (.+)")


def reraised(text: str) -> ByolTuneError | None:
    """The user error a traceback's text ends with, rebuilt with its class, else None. Errors raised in
    a DataLoader worker or a Ray Train worker come back as such text: "...\nbyol_tune.errors.DataError:
    <message>". Only the last line counts: an earlier one belongs to an exception that led to another."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found = _RAISED.fullmatch(lines[-1]) if lines else None
    cls = globals().get(found[1]) if found else None
    if found is None or not (isinstance(cls, type) and issubclass(cls, ByolTuneError)):
        return None
    return cls(found[2])


def one_line(exc: BaseException) -> str:
    """An error as one line: a re-raised user error's own message (see :func:`reraised`), else the last
    non-empty line of the message (a traceback's text ends with the exception), else the type's name."""
    text = str(exc)
    inner = reraised(text)
    if inner is not None:
        return str(inner)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
