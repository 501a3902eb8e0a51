"""PNG plots of a search: objective per trial, learning curves, importances, parallel coordinates."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from byol_tune.search.report import TrialRecord, outcome, save_figure


def write_plots(records: list[TrialRecord], objective: str, max_epochs: int, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [
        _objective_per_trial(records, objective, folder / "objective_per_trial.png"),
        _learning_curves(records, objective, max_epochs, folder / "learning_curves.png"),
        _parallel_coordinates(records, objective, folder / "parallel_coordinates.png"),
    ]
    importance = param_importances(records, objective)
    if importance:
        finished = sum(math.isfinite(r.best(objective)) for r in records)
        paths.append(_importances(importance, objective, finished, folder / "param_importances.png"))
    return paths


def _objective_per_trial(records: list[TrialRecord], objective: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    best = [r.best(objective) for r in records]
    running, so_far = [], -math.inf
    for value in best:
        so_far = max(so_far, value) if math.isfinite(value) else so_far
        running.append(so_far if math.isfinite(so_far) else math.nan)
    ax.plot(range(1, len(best) + 1), best, "o", label=f"trial best {objective}")
    ax.step(range(1, len(best) + 1), running, where="post", label="best so far")
    ax.set(xlabel="trial (in order started)", ylabel=objective, title="Objective per trial")
    ax.legend()
    save_figure(fig, path)
    plt.close(fig)
    return path


def _learning_curves(records: list[TrialRecord], objective: str, max_epochs: int, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for r in records:
        rows = [row for row in r.history if objective in row]
        style = "--" if outcome(r, max_epochs) != "completed" else "-"
        ax.plot(
            [row.get("epoch", i + 1) for i, row in enumerate(rows)],
            [row[objective] for row in rows],
            style,
            marker=".",
            label=f"{r.trial_id} ({outcome(r, max_epochs)})",
        )
    ax.set(xlabel="epoch", ylabel=objective, title="Learning curves (dashed: stopped early)")
    if len(records) <= 12:
        ax.legend(fontsize=6)
    save_figure(fig, path)
    plt.close(fig)
    return path


def _numeric(values: list[Any]) -> list[float] | None:
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values]
    return None


def axis_ticks(values: list[Any], log_ok: bool) -> tuple[list[float], list[tuple[float, str]]]:
    """One parallel-coordinates axis: each value's height in [0, 1] and the labels to write on it.

    Numbers spanning over 20x (and ``log_ok``) sit on a log scale; the axis is labelled with its ends.
    Anything else (choices of text, booleans) sits at the positions of its sorted distinct values, each
    labelled."""
    numeric = _numeric(values)
    if numeric is None:
        levels = sorted({str(v) for v in values})
        at = {level: k / (len(levels) - 1) if len(levels) > 1 else 0.5 for k, level in enumerate(levels)}
        return [at[str(v)] for v in values], [(height, level) for level, height in at.items()]
    low, high = min(numeric), max(numeric)
    log = log_ok and low > 0 and high / low > 20
    scaled = [math.log10(v) for v in numeric] if log else numeric
    a, b = min(scaled), max(scaled)
    heights = [(v - a) / (b - a) if b > a else 0.5 for v in scaled]
    if b == a:
        return heights, [(0.5, _label(low))]
    return heights, [(0.0, _label(low)), (1.0, _label(high) + (" (log)" if log else ""))]


def _label(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e6 else f"{value:.3g}"


def _parallel_coordinates(records: list[TrialRecord], objective: str, path: Path) -> Path:
    done = [r for r in records if math.isfinite(r.best(objective))]
    keys = sorted({k for r in done for k in r.params})
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * (len(keys) + 1)), 4.5))
    if done and keys:
        columns = []
        for x, key in enumerate([*keys, objective]):
            raw = [r.best(objective) if key == objective else r.params.get(key) for r in done]
            heights, labels = axis_ticks(raw, log_ok=key != objective)
            columns.append(heights)
            ax.axvline(x, color="grey", lw=0.5)
            for y, text in labels:
                ax.annotate(text, (x, y), xytext=(3, 0), textcoords="offset points", fontsize=6, va="center")
        scores = [r.best(objective) for r in done]
        low, high = min(scores), max(scores)
        cmap = plt.get_cmap("viridis")
        for i in range(len(done)):
            shade = (scores[i] - low) / (high - low) if high > low else 1.0
            ax.plot(range(len(columns)), [c[i] for c in columns], color=cmap(shade), alpha=0.8)
        ax.set_xticks(range(len(columns)), [*keys, objective], rotation=30, ha="right", fontsize=7)
    ax.set(title="Parallel coordinates (colour: objective; axes labelled at their ends)", yticks=[])
    save_figure(fig, path)
    plt.close(fig)
    return path


MIN_IMPORTANCE_TRIALS = 5  # PED-ANOVA over fewer finished trials ranks noise: no importance plot


def param_importances(records: list[TrialRecord], objective: str) -> dict[str, float]:
    """Optuna's PED-ANOVA importances of the searched parameters; none (no plot) from fewer than
    :data:`MIN_IMPORTANCE_TRIALS` finished trials."""
    import optuna

    done = [r for r in records if math.isfinite(r.best(objective)) and r.params]
    if len(done) < MIN_IMPORTANCE_TRIALS:
        return {}
    distributions: dict[str, Any] = {}
    for key in sorted({k for r in done for k in r.params}):
        values = [r.params.get(key) for r in done]
        numeric = _numeric(values)
        if numeric is not None and len(set(numeric)) > 1:
            distributions[key] = optuna.distributions.FloatDistribution(min(numeric), max(numeric))
        elif len({str(v) for v in values}) > 1:
            distributions[key] = optuna.distributions.CategoricalDistribution(
                sorted({str(v) for v in values})
            )
    if not distributions:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for r in done:
        params = {
            k: (
                float(r.params[k])
                if isinstance(d, optuna.distributions.FloatDistribution)
                else str(r.params[k])
            )
            for k, d in distributions.items()
            if k in r.params
        }
        if len(params) == len(distributions):
            study.add_trial(
                optuna.trial.create_trial(params=params, distributions=distributions, value=r.best(objective))
            )
    if len(study.trials) < MIN_IMPORTANCE_TRIALS:
        return {}
    # PED-ANOVA needs no scikit-learn (fANOVA does); with few trials it can fail: then no plot
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    try:
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}


def _importances(importance: dict[str, float], objective: str, trials: int, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(importance) + 1.5))
    names = list(importance)[::-1]
    ax.barh(names, [importance[n] for n in names])
    ax.set(xlabel="importance (PED-ANOVA)", title=f"Parameter importances for {objective} ({trials} trials)")
    save_figure(fig, path)
    plt.close(fig)
    return path
