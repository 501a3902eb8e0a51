"""Shared CLI behaviour: a user error is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from byol_tune.errors import ByolTuneError, ConfigError, one_line


def user_error_line(exc: BaseException) -> str | None:
    """The one-line message of a user error, also when a DataLoader worker re-raised it."""
    return one_line(exc) if isinstance(exc, ByolTuneError) else None


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one ``error:`` line, exit code 2, not usage + error."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} ({self.prog} --help lists the flags)")


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None) -> int:
    try:
        return main(argv)
    except ByolTuneError as exc:
        print(f"error: {user_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # its message, if any, says what to do next
        print(f"interrupted: {exc}" if str(exc) else "interrupted", file=sys.stderr)
        return 130


def add_set_flag(parser: argparse.ArgumentParser, example: str, what: str) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``; ``what`` says what it overrides."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"{what}, e.g. --set {example} (repeatable)",
    )
