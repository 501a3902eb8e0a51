"""Atomic file writes: a crash never leaves a half-written result behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from byol_tune.errors import ConfigError, reason


def _read_umask() -> int:
    """The process umask, read once at import (setting it to read it would race other threads later)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()


def is_folder_name(value: str) -> bool:
    """Whether ``value`` names one folder inside another: not empty, not ``.``/``..``, no separator."""
    return value not in ("", ".", "..") and "/" not in value and "\\" not in value


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temp file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes 0600; results are read by others on shared storage
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(text)

    atomic_write(path, write)


def fresh_dir(parent: Path, name: str) -> Path:
    """``parent/name``, or ``parent/name-1``, ``-2``... so that nothing already written is reused.
    A parent that cannot hold it (a file, read-only, gone) is one :class:`ConfigError` line."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for i in range(10_000):
            candidate = parent / (name if i == 0 else f"{name}-{i}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                if candidate.is_dir():
                    continue
                raise
    except OSError as exc:
        blocker = next((p for p in (parent, *parent.parents) if p.exists()), parent)
        why = f"{blocker} is a file" if blocker.exists() and not blocker.is_dir() else exc.strerror
        raise ConfigError(f"{parent}: cannot create a run folder there ({why or reason(exc)})") from None
    raise ConfigError(f"{parent}: no free run folder name for {name!r}")
