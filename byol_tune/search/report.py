"""What a finished search leaves behind: trials.csv, summary.md and PNG plots (no Ray needed).

Every file is written atomically (temp file + rename), so a crash never leaves half a result.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from byol_tune.io import atomic_write, atomic_write_text


@dataclass
class TrialRecord:
    """One trial: its searched parameters, every evaluation it reported, and how it ended."""

    trial_id: str
    params: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    status: str = "TERMINATED"
    error: str | None = None

    def values(self, metric: str) -> list[float]:
        return [row[metric] for row in self.history if metric in row and _finite(row[metric])]

    def best(self, metric: str) -> float:
        values = self.values(metric)
        return max(values) if values else float("nan")

    def final(self, metric: str) -> float:
        values = self.values(metric)
        return values[-1] if values else float("nan")

    def epochs_run(self) -> int:
        return int(max((row.get("epoch", 0) for row in self.history), default=0))


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def stopped_early(record: TrialRecord, max_epochs: int) -> bool:
    return record.status == "TERMINATED" and 0 < record.epochs_run() < max_epochs


def outcome(record: TrialRecord, max_epochs: int) -> str:
    if record.status == "ERROR":
        return "error"
    return "stopped early" if stopped_early(record, max_epochs) else "completed"


def rank(records: list[TrialRecord], objective: str) -> list[TrialRecord]:
    """Trials best first by their best objective value; trials without one go last."""
    return sorted(
        records, key=lambda r: r.best(objective) if _finite(r.best(objective)) else -math.inf, reverse=True
    )


def trials_csv(records: list[TrialRecord], objective: str, max_epochs: int) -> str:
    param_keys = sorted({k for r in records for k in r.params})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["trial_id", *param_keys, f"final_{objective}", f"best_{objective}", "status", "epochs_run", "error"]
    )
    for r in records:
        writer.writerow(
            [
                r.trial_id,
                *(r.params.get(k, "") for k in param_keys),
                r.final(objective),
                r.best(objective),
                outcome(r, max_epochs),
                r.epochs_run(),
                r.error or "",
            ]
        )
    return out.getvalue()


def summary_md(
    records: list[TrialRecord], objective: str, max_epochs: int, best_config_path: Path, wall_seconds: float
) -> str:
    ranked = [r for r in rank(records, objective) if _finite(r.best(objective))]
    lines = [
        "# Search summary\n",
        f"- trials: {len(records)} ("
        + ", ".join(
            f"{sum(outcome(r, max_epochs) == o for r in records)} {o}"
            for o in ("completed", "stopped early", "error")
        )
        + ")",
        f"- wall time: {wall_seconds / 60:.1f} min",
        f"- objective: `{objective}` (max)",
    ]
    if ranked:
        best, worst = ranked[0], ranked[-1]
        lines += [
            f"- best trial: `{best.trial_id}`, {objective} = {best.best(objective):.2f}",
            f"- worst trial: `{worst.trial_id}`, {objective} = {worst.best(objective):.2f}",
            f"- best config: `{best_config_path.name}`",
        ]
        if best.params:  # a space with nothing to search (fixed settings over seeds) has none
            lines += ["", "## Best parameters", ""]
            lines += [f"- `{k}`: {v}" for k, v in sorted(best.params.items())]
    lines += [
        "",
        "## Trials",
        "",
        f"| trial | best {objective} | final | epochs | status |",
        "|---|---|---|---|---|",
    ]
    for r in rank(records, objective):
        lines.append(
            f"| {r.trial_id} | {r.best(objective):.2f} | {r.final(objective):.2f} | "
            f"{r.epochs_run()} | {outcome(r, max_epochs)} |"
        )
    return "\n".join(lines) + "\n"


def write_reports(
    records: list[TrialRecord],
    objective: str,
    max_epochs: int,
    folder: Path,
    best_config_path: Path,
    wall_seconds: float,
) -> list[Path]:
    """Write trials.csv, summary.md and the plots; returns the paths written."""
    written = [folder / "trials.csv", folder / "summary.md"]
    atomic_write_text(written[0], trials_csv(records, objective, max_epochs))
    atomic_write_text(written[1], summary_md(records, objective, max_epochs, best_config_path, wall_seconds))
    from byol_tune.search import plots  # matplotlib only when plotting

    written += plots.write_plots(records, objective, max_epochs, folder / "plots")
    return written


def save_figure(figure: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
