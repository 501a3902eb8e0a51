"""Markdown and PNG plots from ``search_quality.py``'s JSON files (one per method and seed).

``make_results.py`` calls :func:`render` for RESULTS.md; run alone, it prints the section:
``python benchmarks/search_quality_report.py [FOLDER]``.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter

KNN = "knn_top1"
LAST_EPOCH_TPE = "tpe_asha_last"
METHOD_NAMES = {
    "lightly": "lightly example settings (fixed)",
    "paper": "BYOL paper settings, scaled (fixed)",
    "random_asha": "random search + ASHA",
    "tpe_asha": "TPE after 3 random trials + ASHA",
    # the same study before 509186f: Ray's OptunaSearch told Optuna each trial's last epoch, not the rung's
    LAST_EPOCH_TPE: "TPE after 3 random trials + ASHA, told each trial's last epoch (before)",
    "tpe_noes": "TPE after 2 random trials, no early stopping",
}
DEFAULT_SEARCH = "random_asha"  # the default search's 10 trials are all TPE's random start-up trials
# search_quality.py --space benchmarks/spaces/wide.yaml, at 24 trial-epochs and at 48 (TPE against random)
WIDE = ("search_quality_wide", "search_quality_long_wide")
TAU_BINS = ((0.0, 0.99), (0.99, 0.9961), (0.9961, 1.0))  # the paper: 0.99-0.996 best, 0.999 worse


def load(folder: Path) -> dict[str, dict[int, dict[str, Any]]]:
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for path in sorted(folder.glob("*-seed*.json")):
        run = json.loads(path.read_text())
        runs.setdefault(run["method"], {})[run["seed"]] = run
    return runs


def first_run(runs: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Any one run of a folder: what they share (budget, threads, settings) is read from it."""
    return next(iter(next(iter(runs.values())).values()))


def best_so_far(run: dict[str, Any]) -> list[float]:
    curve, best = [], -math.inf
    for event in run["events"]:
        best = max(best, event[KNN])
        curve.append(best)
    return curve


def epochs_to_reach(run: dict[str, Any], target: float) -> int | None:
    """Cumulative trial-epochs at which ``run``'s best-so-far first reaches ``target`` (None: never)."""
    return first_reaching(best_so_far(run), target)


def first_reaching(curve: list[float], target: float) -> int | None:
    """The 1-based position where ``curve`` first reaches ``target`` (None: never)."""
    return next((i + 1 for i, v in enumerate(curve) if v >= target - 1e-9), None)


def config_text(config: dict[str, Any]) -> str:
    """``key value, ...``: integers as they are, other numbers to 3 significant digits, or for a number
    just below 1 (a tau), to 3 digits of its distance from 1."""
    return ", ".join(f"{k} {number_text(v)}" for k, v in config.items())


def number_text(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    if 0.99 <= value < 1:
        return f"{value:.{math.ceil(-math.log10(1 - value)) + 2}f}".rstrip("0")
    return f"{value:.3g}"


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def summary_table(runs: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    lines = [
        f"| method | seeds | best {KNN} (mean ± sd) | per seed | trials | trial-epochs used "
        "| minutes per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, name in METHOD_NAMES.items():
        if method not in runs:
            continue
        seeds = sorted(runs[method])
        bests = [runs[method][s]["best"] for s in seeds]
        trials = [len(runs[method][s]["trials"]) for s in seeds]
        used = [len(runs[method][s]["events"]) for s in seeds]
        minutes = [runs[method][s]["minutes"] for s in seeds]
        lines.append(
            f"| {name} | {len(seeds)} | {mean_sd(bests)} | {', '.join(f'{b:.1f}' for b in bests)} | "
            f"{', '.join(map(str, trials))} | {', '.join(map(str, used))} | {statistics.mean(minutes):.1f} |"
        )
    return lines


def goals(runs: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    lines = []
    searched, lightly = runs.get(DEFAULT_SEARCH, {}), runs.get("lightly", {})
    if searched and lightly:
        lead = statistics.mean(r["best"] for r in searched.values()) - statistics.mean(
            r["best"] for r in lightly.values()
        )
        per_seed = [searched[s]["best"] - lightly[s]["best"] for s in sorted(searched) if s in lightly]
        lines.append(
            f"- Searched best ({METHOD_NAMES[DEFAULT_SEARCH]}: what the default search does, its trials "
            "being TPE's 10 random start-up trials) vs lightly's settings at equal trial-epochs: "
            f"**{lead:+.1f}** points on the mean "
            f"(per seed {', '.join(f'{d:+.1f}' for d in per_seed)}); goal >= +5: "
            f"**{'MET' if lead >= 5 else 'MISSED'}**."
        )
    return lines + tpe_against_random(runs) + retrain_leads(runs, lightly)


def tpe_against_random(runs: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """The TPE goal: TPE + ASHA reaching random + ASHA's final best in at most half the trial-epochs."""
    tpe, random = runs.get("tpe_asha", {}), runs.get("random_asha", {})
    seeds = sorted(set(tpe) & set(random))
    if not seeds:
        return []
    reached, ok = [], True
    for seed in seeds:
        target, used = random[seed]["best"], len(random[seed]["events"])
        at = epochs_to_reach(tpe[seed], target)
        ok = ok and at is not None and at <= used / 2
        reached.append(
            f"seed {seed}: random's {target:.1f} after {used} trial-epochs, TPE+ASHA "
            + (f"after {at}" if at is not None else "never")
        )
    random_mean, tpe_mean = mean_curve(random), mean_curve(tpe)
    half, target = len(random_mean) // 2, random_mean[-1]
    at_mean = first_reaching(tpe_mean, target)
    return [
        f"- TPE + ASHA reaching random search's final best in <= half the trial-epochs: "
        f"**{'MET' if ok else 'MISSED'}** ({'; '.join(reached)}).",
        f"- The same goal read on the seeds' mean curves (the plot's lines): random's final mean "
        f"{target:.1f} after {len(random_mean)} trial-epochs; TPE + ASHA's mean "
        + (f"reaches it after {at_mean}" if at_mean is not None else "never reaches it")
        + f", and is {tpe_mean[half - 1]:.1f} after {half} (random's: {random_mean[half - 1]:.1f}): "
        f"**{'MET' if at_mean is not None and at_mean <= half else 'MISSED'}**.",
    ]


def mean_curve(runs: dict[int, dict[str, Any]]) -> list[float]:
    """Best-so-far averaged over seeds, epoch by epoch, as long as the shortest run."""
    return mean_of([best_so_far(r) for r in runs.values()])


def mean_of(curves: list[list[float]]) -> list[float]:
    return [statistics.mean(c[i] for c in curves) for i in range(min(len(c) for c in curves))]


def retrain_leads(
    runs: dict[str, dict[int, dict[str, Any]]], lightly: dict[int, dict[str, Any]]
) -> list[str]:
    """Each retrained best config against lightly's mean best (the retrain-lead goal)."""
    if not lightly:
        return []
    base = statistics.mean(r["best"] for r in lightly.values())
    lines = []
    for method, by_seed in runs.items():
        retrains = [r["retrain"] for r in by_seed.values() if "retrain" in r]
        if retrains:
            leads = [r["best"] - base for r in retrains]
            values = ", ".join(f"{r['best']:.1f}" for r in retrains)
            lines.append(
                f"- The best {METHOD_NAMES[method]} config retrained from scratch with another seed "
                f"(space's max_epochs): {values}, i.e. {', '.join(f'{d:+.1f}' for d in leads)} "
                f"over lightly's mean: lead kept (>= +5) in {sum(d >= 5 for d in leads)} of {len(leads)}."
            )
    return lines


def trials_reaching(runs: dict[str, dict[int, dict[str, Any]]], at_epoch: int) -> list[dict[str, Any]]:
    """Every search trial (not the fixed configs) that reported ``at_epoch``, with its run's seed."""
    return [
        {**trial, "seed": run["seed"]}
        for method, by_seed in runs.items()
        if method not in ("lightly", "paper", LAST_EPOCH_TPE)  # its start-up trials are tpe_asha's
        for run in by_seed.values()
        for trial in run["trials"]
        if len(trial["history"]) >= at_epoch
    ]


def distinct(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One trial per seed and sampled config, the one that ran longest: TPE's start-up trials recur in every
    method run on a seed, and a config stopped early in one search may run on in another."""
    found: dict[str, dict[str, Any]] = {}
    for trial in trials:
        config = trial["sample"] if "sample" in trial else trial["trial"]  # a fixed config: its trial id
        key = json.dumps([trial["seed"], config], sort_keys=True)
        if key not in found or len(trial["history"]) > len(found[key]["history"]):
            found[key] = trial
    return list(found.values())


def search_trials(
    runs: dict[str, dict[int, dict[str, Any]]], at_epoch: int
) -> list[tuple[float, float, float]]:
    """(tau_base, learning_rate, knn at ``at_epoch``) of every search trial that reached that epoch."""
    return [
        (t["params"]["tau_base"], t["params"]["learning_rate"], t["history"][at_epoch - 1])
        for t in distinct(trials_reaching(runs, at_epoch))
    ]


def standard_error(a: list[float], b: list[float]) -> float:
    """Of the difference of two sample means."""
    return math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))


def sensitivity(points: list[tuple[float, float, float]], at_epoch: int) -> list[str]:
    """The tau bins' ``knn_top1`` and, in words, how they compare with the paper's finding."""
    bins = {}
    for low, high in TAU_BINS:
        label = (
            f"tau < {high}"
            if low == 0
            else (f"tau >= {low:.4g}" if high == 1 else f"{low} <= tau < {high:.4g}")
        )
        bins[label] = [k for tau, _, k in points if low <= tau < high]
    cells = [
        f"{label}: {mean_sd(ks)} ({len(ks)} trials)" if ks else f"{label}: no trials"
        for label, ks in bins.items()
    ]
    lines = [f"- Sensitivity ({KNN} at epoch {at_epoch}, every search trial): " + "; ".join(cells) + "."]
    if all(len(ks) > 1 for ks in bins.values()):
        means = {label: statistics.mean(ks) for label, ks in bins.items()}
        paper, best = list(bins)[1], max(means, key=lambda label: means[label])  # paper: 0.99-0.996
        rivals = [label for label in bins if label != paper] if best == paper else [paper]
        # told apart: the best bin leads each rival by more than two standard errors of the difference
        gaps = [(means[best] - means[r]) / standard_error(bins[best], bins[r]) for r in rivals]
        if min(gaps) <= 2:
            verdict = (
                f"cannot tell the bins apart: {best} scores best, but by {min(gaps):.1f} standard errors "
                "or less, so the paper's ranking is neither confirmed nor contradicted at this budget"
            )
        elif best == paper:
            verdict = f"agrees: {paper} scores best, by more than 2 standard errors"
        else:
            verdict = f"does not reproduce it: {best} beats {paper} by more than 2 standard errors"
        lines.append(
            f"- Against the BYOL paper (tau 0.99-0.996 best, 0.999 and 1 worse): this study {verdict}."
        )
    return lines


@dataclass(frozen=True)
class Round:
    """A study over an earlier default space, kept in ``folder`` (and ``longer``, its longer searches)."""

    folder: str
    space: str  # in words: how the space differed from the one after it
    evidence_keys: tuple[str, ...]  # the sampled keys the space was changed on
    longer: str | None = None
    surrogate: str | None = None  # search_surrogate.py's JSON as fitted to this round, in ``folder``


ROUNDS = (  # newest first
    Round(
        "search_quality_round3",
        "learning rate 3e-4 to 1e-2, tau schedule 200, 500 or 1000 steps, projector 512, 1024 or 2048 "
        "hidden and 64, 128 or 256 out, predictor 512, 1024 or 2048 hidden",
        (
            "learning_rate",
            "tau_schedule_steps",
            "projector_hidden_dim",
            "projector_out_dim",
            "predictor_hidden_dim",
        ),
        longer="search_quality_long_round3",
        surrogate="search_surrogate.json",
    ),
    Round(
        "search_quality_round2",
        "heads 256-1024, warm-up 0 or 1 epoch; its stopper counted a trial's repeated last result as an "
        "epoch, see trial-epochs used",
        ("warmup_epochs", "projector_hidden_dim", "predictor_hidden_dim"),
    ),
)
EVIDENCE_BINS = {"learning_rate": (3e-4, 1e-3, 3e-3, 1e-2)}  # a continuous key is grouped by these edges


def evidence_group(key: str, value: Any) -> tuple[tuple[int, Any], str]:
    """(sort key, label) of ``value``'s group: the value itself, or its bin for a key in
    :data:`EVIDENCE_BINS`; numbers sort by value, before any other choice."""
    if not isinstance(value, int | float):
        return (1, str(value)), str(value)
    edges = EVIDENCE_BINS.get(key)
    if edges is None:
        return (0, value), f"{value:g}"
    if value < edges[0]:  # every value below the first edge in one group
        return (0, -math.inf), f"< {edges[0]:g}"
    if value >= edges[-1]:
        return (0, edges[-1]), f">= {edges[-1]:g}"
    low = max(e for e in edges if e <= value)
    return (0, low), f"{low:g}-{min(e for e in edges if e > value):g}"


def space_evidence(trials: list[dict[str, Any]], at_epoch: int, keys: tuple[str, ...]) -> list[str]:
    """``knn_top1`` at ``at_epoch`` of the :func:`distinct` search ``trials``, grouped by each value of the
    sampled ``keys``: what the space was changed on."""
    lines = []
    for key in keys:
        groups: dict[tuple[tuple[int, Any], str], list[float]] = {}
        for trial in distinct([t for t in trials if "sample" in t]):
            if key in trial["sample"]:
                group = evidence_group(key, trial["sample"][key])
                groups.setdefault(group, []).append(trial["history"][at_epoch - 1])
        if groups:
            cells = [
                f"{label}: {mean_sd(knns)} ({len(knns)} trials)"
                for (_, label), knns in sorted(groups.items())
            ]
            lines.append(f"- {KNN} at epoch {at_epoch} by sampled `{key}`: " + "; ".join(cells) + ".")
    return lines


def surrogate_check(path: Path, retrained: list[dict[str, Any]]) -> list[str]:
    """The surrogate's best config trained for real (``path``: search_surrogate.py's JSON with its
    ``--check``) against the ``retrained`` best configs of random + ASHA runs, seed by seed."""
    if not path.is_file():
        return []
    result = json.loads(path.read_text())
    check = result.get("check")
    if not check:
        return []
    oracle = config_text(result["oracle"])
    bests = {int(seed): max(history) for seed, history in check["histories"].items()}
    lines = [
        f"- The surrogate fitted to this round ({path.parent.name}/{path.name}) put its best config at "
        f"{oracle}; "
        f"trained for real ({check['max_epochs']} epochs, seeds {', '.join(map(str, bests))}): best {KNN} "
        f"{mean_sd(list(bests.values()))} ({', '.join(f'{b:.1f}' for b in bests.values())})."
    ]
    for budget in sorted({run["budget"] for run in retrained}):
        paired = [
            f"seed {r['retrain']['seed']}: {bests[r['retrain']['seed']] - r['retrain']['best']:+.1f}"
            for r in retrained
            if r["budget"] == budget and r["retrain"]["seed"] in bests
        ]
        if paired:
            lines.append(
                f"- Against the round's best random + ASHA configs at {budget} trial-epochs, retrained on "
                f"the same seeds: {', '.join(paired)}."
            )
    return lines


def previous_round(results: Path, past: Round, at_epoch: int) -> list[str]:
    """The study over an earlier default space, and what the space was changed on."""
    runs = load(results / past.folder)
    if not runs:
        return []
    longer = load(results / past.longer) if past.longer else {}
    retrained = [
        run
        for by_method in (runs, longer)
        for run in by_method.get(DEFAULT_SEARCH, {}).values()
        if "retrain" in run
    ]
    checked = surrogate_check(results / past.folder / past.surrogate, retrained) if past.surrogate else []
    return [
        f"### Before a space change ({past.folder}/)",
        "",
        f"The same study over an earlier default space ({past.space}), run on the machine of its day (the "
        "lightly rows, here and above, show how much a machine moves the same config):",
        "",
        *summary_table(runs),
        "",
        *tpe_against_random(runs),
        *retrain_leads(runs, runs.get("lightly", {})),
        "",
        *(
            [
                f"Its longer searches ({past.longer}/):",
                "",
                *summary_table(longer),
                "",
                *tpe_against_random(longer),
                *retrain_leads(longer, runs.get("lightly", {})),
                "",
            ]
            if longer
            else []
        ),
        "What the space was changed on (every search trial of the round):",
        "",
        *space_evidence(
            trials_reaching(runs, at_epoch) + trials_reaching(longer, at_epoch), at_epoch, past.evidence_keys
        ),
        *checked,
        "",
    ]


def longer_searches(
    folder: Path, lightly: dict[int, dict[str, Any]], base_budget: int, image_dir: Path
) -> list[str]:
    """TPE against random with a larger budget than ``base_budget`` (``folder``): TPE models more trials."""
    runs = load(folder)
    if not runs:
        return []
    any_run = first_run(runs)
    curves = plot_curves(runs, image_dir / f"{folder.name}_curves.png")
    return [
        f"### Longer searches ({folder.name}/)",
        "",
        f"TPE against random only, {any_run['budget']} trial-epochs per seed (against {base_budget} above), "
        f"ASHA searches that may start {any_run['settings']['num_samples']} trials; "
        "the retrain is compared with lightly's runs above:",
        "",
        *summary_table(runs),
        "",
        *tpe_against_random(runs),
        *retrain_leads(runs, lightly),
        "",
        f"![best so far, longer searches]({curves.relative_to(image_dir.parent).as_posix()})",
        "",
    ]


def space_text(name: str) -> str:
    """A space's searched keys and their ranges, in words, from its file (``name``: as load_space takes,
    a relative path from the repository's root or the working folder)."""
    from byol_tune.search.space import load_space

    in_repo = Path(__file__).resolve().parent.parent / name
    parts = []
    for key, dist in load_space(in_repo if in_repo.is_file() else name).params.items():
        values = [f"{v:g}" if isinstance(v, float) else str(v) for v in dist.args]
        if dist.kind == "choice":
            parts.append(f"{key} {', '.join(values[:-1])} or {values[-1]}" if len(values) > 1 else key)
        else:
            parts.append(f"{key} {values[0]} to {values[-1]}")
    return ", ".join(parts)


def wide_space(folder: Path, lightly: dict[int, dict[str, Any]], at_epoch: int, image_dir: Path) -> list[str]:
    """The searches over the wide space (``folder``): where TPE has bad regions to learn to avoid."""
    runs = load(folder)
    searches = {m: by_seed for m, by_seed in runs.items() if any("space" in r for r in by_seed.values())}
    if not searches:
        return []
    any_run = first_run(searches)
    space = any_run["space"]
    curves = plot_curves(searches, image_dir / f"{folder.name}_curves.png")
    lines = [
        f"### A wide space ({folder.name}/)",
        "",
        f"The searches over `{space}` ({space_text(space)}), {any_run['budget']} trial-epochs per seed:",
        "",
        *summary_table(searches),
        "",
    ]
    if lightly:
        base = statistics.mean(r["best"] for r in lightly.values())
        leads = [
            f"{METHOD_NAMES[m]} {statistics.mean(r['best'] for r in searches[m].values()) - base:+.1f}"
            for m in METHOD_NAMES
            if m in searches
        ]
        lightly_budget = first_run({"lightly": lightly})["budget"]
        lines.append(
            f"- Best over lightly's mean ({base:.1f}, one run of {lightly_budget} epochs above): "
            + "; ".join(leads)
            + "."
        )
    return [
        *lines,
        *tpe_against_random(searches),
        *retrain_leads(searches, lightly),
        *space_evidence(trials_reaching(searches, at_epoch), at_epoch, ("learning_rate", "warmup_epochs")),
        "",
        f"![best so far, wide space]({curves.relative_to(image_dir.parent).as_posix()})",
        "",
    ]


def plot_curves(runs: dict[str, dict[int, dict[str, Any]]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    for method, name in METHOD_NAMES.items():
        if method not in runs:
            continue
        curves = [best_so_far(r) for r in runs[method].values()]
        mean = mean_of(curves)
        n = len(mean)
        xs = range(1, n + 1)
        ax.plot(xs, mean, label=name)
        ax.fill_between(
            xs,
            [min(c[i] for c in curves) for i in range(n)],
            [max(c[i] for c in curves) for i in range(n)],
            alpha=0.15,
        )
    ax.set(
        xlabel="cumulative trial-epochs",
        ylabel=f"best {KNN} so far",
        title="Search quality (mean, min-max over seeds)",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sensitivity(points: list[tuple[float, float, float]], at_epoch: int, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    taus, lrs, knns = zip(*points, strict=True)
    axes[0].scatter([1 - t for t in taus], knns, s=14)
    axes[0].set(xscale="log", xlabel="1 - tau_base (log)", ylabel=f"{KNN} at epoch {at_epoch}")
    for tau in (0.99, 0.996, 0.999):
        axes[0].axvline(1 - tau, color="grey", lw=0.6, ls="--")
    axes[1].scatter(lrs, knns, s=14)
    axes[1].set(xscale="log", xlabel="learning_rate (log)")
    # the range spans about one decade: its labelled minor ticks would overlap
    axes[1].xaxis.set_minor_formatter(NullFormatter())
    fig.suptitle("Sensitivity over all search trials (dashed: tau 0.99, 0.996, 0.999)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render(
    folder: Path,
    image_dir: Path,
    rounds: tuple[Round, ...] = (),
    longer: Path | None = None,
    wide: tuple[Path, ...] = (),
) -> list[str]:
    """Section 6 from ``folder`` (the study over the current default space), its ``longer`` searches,
    the searches over a ``wide`` space and the earlier ``rounds`` (newest first; their folders lie in
    ``image_dir``, where the plots go)."""
    runs = load(folder)
    if not runs:
        return [f"Not measured yet: `python benchmarks/search_quality.py` (writes {folder.name}/)."]
    any_run = first_run(runs)
    at_epoch = 2
    points = search_trials(runs, at_epoch)
    lines = [
        f"Embedded shapes, small CNN, {any_run['budget']} trial-epochs per method and seed, "
        f"{any_run['threads']} torch thread(s) per process. "
        "Each fixed config is one run of that many epochs.",
        "",
        *summary_table(runs),
        "",
        *goals(runs),
        *(sensitivity(points, at_epoch) if points else []),
        "",
    ]
    curves = plot_curves(runs, image_dir / "search_quality_curves.png")
    lines += [f"![best so far against trial-epochs]({curves.relative_to(image_dir.parent).as_posix()})", ""]
    if points:
        sens = plot_sensitivity(points, at_epoch, image_dir / "search_quality_sensitivity.png")
        lines += [
            f"![sensitivity to tau and learning rate]({sens.relative_to(image_dir.parent).as_posix()})",
            "",
        ]
    if longer is not None:
        lines += longer_searches(longer, runs.get("lightly", {}), any_run["budget"], image_dir)
    for folder_of_wide in wide:
        lines += wide_space(folder_of_wide, runs.get("lightly", {}), at_epoch, image_dir)
    return lines + [line for past in rounds for line in previous_round(image_dir, past, at_epoch)]


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else here / "results" / "search_quality"
    results = here / "results"
    print(
        "\n".join(
            render(folder, results, ROUNDS, results / "search_quality_long", tuple(results / w for w in WIDE))
        )
    )
