"""Turn Ray Tune's ``ResultGrid`` into plain :class:`TrialRecord` objects, and load past experiments."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from byol_tune.config import BYOLConfig, load_config
from byol_tune.errors import ConfigError, one_line
from byol_tune.search.report import TrialRecord, outcome, rank

HISTORY_KEYS = ("epoch", "step", "knn_top1", "knn_top5", "rankme", "eval_seconds")


def records_from_grid(grid: Any, objective: str) -> list[TrialRecord]:
    """The grid's trials in the order they started (TPE's trial ids are random, so not by id)."""
    started: list[tuple[float, TrialRecord]] = []
    for result in grid:
        frame = result.metrics_dataframe
        history: list[dict[str, float]] = []
        start = math.inf  # never reported: after every trial that did
        if frame is not None and len(frame):
            rows = frame.to_dict("records")
            for row in rows:
                history.append({k: float(row[k]) for k in HISTORY_KEYS if k in row and _number(row[k])})
            first = rows[0]
            if _number(first.get("timestamp")) and _number(first.get("time_total_s")):
                start = float(first["timestamp"]) - float(first["time_total_s"])
        params = dict(result.config or {})
        trial_id = str((result.metrics or {}).get("trial_id") or Path(result.path).name)
        status = "ERROR" if result.error else "TERMINATED"
        error = one_line(result.error) if result.error else None
        record = TrialRecord(trial_id=trial_id, params=params, history=history, status=status, error=error)
        started.append((start, record))
    return [record for _, record in sorted(started, key=lambda p: (p[0], p[1].trial_id))]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value))


def table(records: list[TrialRecord], objective: str, max_epochs: int) -> str:
    keys = sorted({k for r in records for k in r.params})
    header = ["trial", *keys, f"best {objective}", "epochs", "status"]
    rows = [header]
    for r in rank(records, objective):
        rows.append(
            [
                r.trial_id,
                *(_fmt(r.params.get(k)) for k in keys),
                f"{r.best(objective):.2f}",
                str(r.epochs_run()),
                outcome(r, max_epochs),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def best_config(experiment: str | Path) -> BYOLConfig:
    """The best configuration an experiment found (its ``best_config.yaml``)."""
    folder = Path(experiment)
    if not folder.is_dir():
        raise ConfigError(f"--from-search {folder}: no such experiment folder")
    path = folder / "best_config.yaml"
    if not path.is_file():
        raise ConfigError(f"--from-search {folder}: no best_config.yaml (did the search finish?)")
    return load_config(path)
