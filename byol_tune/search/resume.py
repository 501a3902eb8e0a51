"""What ``--resume`` reads: the state a search writes into its experiment folder when it begins."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from byol_tune.errors import ConfigError, reason
from byol_tune.io import atomic_write_text

STATE_FILE = "byol_search.yaml"  # what --resume needs to rebuild the same search
TUNER_FILE = "tuner.pkl"  # Tune's own state, written when the search begins
SPACE_COPY = "space.yaml"  # the space as it was searched: --resume reads this, not the original file


def write_state(experiment: Path, argv: list[str]) -> None:
    """The command line the search began with and where it began (relative paths point from there)."""
    state = {"argv": list(argv), "cwd": os.getcwd()}
    atomic_write_text(experiment / STATE_FILE, yaml.safe_dump(state))


def add_wall_seconds(experiment: Path, seconds: float) -> float:
    """Add one run's wall time (the first, or a ``--resume``) to the experiment's record; the total."""
    state_file = experiment / STATE_FILE
    state = yaml.safe_load(state_file.read_text())
    total = float(state.get("wall_seconds", 0.0)) + seconds
    atomic_write_text(state_file, yaml.safe_dump({**state, "wall_seconds": total}))
    return total


def read_state(experiment: Path) -> dict[str, Any]:
    """``write_state``'s record, checked, from a folder where Tune also saved its own state."""
    state_file = experiment / STATE_FILE
    if not experiment.is_dir():
        raise ConfigError(f"--resume {experiment}: no such experiment folder")
    if not state_file.is_file():
        raise ConfigError(f"--resume {experiment}: not a byol-tune experiment (no {STATE_FILE})")
    try:
        state = yaml.safe_load(state_file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--resume {state_file}: not valid YAML: {reason(exc)}") from None
    if (
        not isinstance(state, dict)
        or not isinstance(state.get("argv"), list)
        or not all(isinstance(a, str) for a in state["argv"])
        or not isinstance(state.get("cwd", ""), str)
        or not isinstance(state.get("wall_seconds", 0.0), float | int)
    ):
        raise ConfigError(f"--resume {state_file}: unreadable experiment state")
    if not (experiment / TUNER_FILE).is_file():
        raise ConfigError(
            f"--resume {experiment}: Tune saved no state there ({TUNER_FILE} missing: stopped before it "
            "began); start the search again"
        )
    return state
