"""Tau sweep: kNN accuracy against BYOL's base target momentum, everything else fixed (issue 6).

The search trials vary every parameter at once, so their tau bins cannot be told apart (RESULTS.md,
section 6). Here one config, the default space's fixed values with the package's defaults for the
searched ones (learning rate 2e-3, weight decay 0.05, heads 512-128 / 512, tau rising to 1 over all
steps), trains for ``--epochs`` at each base tau of the BYOL paper's Table 5a (0.9 to 0.999, and 1:
a constant target that never moves), on ``--seeds``. One JSON per (tau, seed) goes to ``--out`` as soon
as it is done, so a run can be resumed (done files are kept). ``make_results.py`` renders the folder.

Run: ``python benchmarks/tau_sweep.py [--seeds 0 1 2] [--epochs 8]`` (about 25 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from search_quality_report import KNN, mean_sd, plt

TAUS = (0.9, 0.97, 0.99, 0.996, 0.999, 1.0)  # 1.0: constant, the paper's "tau = 1"
PAPER_BEST = (0.99, 0.996)  # Grill et al. 2020, Table 5a: best at 0.99-0.996, worse at 0.999 and 1
PAPER_WORSE = (0.999, 1.0)


def sweep_values(tau: float, seed: int, epochs: int, workdir: Path) -> dict[str, Any]:
    """Config values of one run: the default space's fixed keys, package defaults for the rest."""
    from byol_tune.search.space import load_space

    values = {
        **load_space("default").fixed,
        "tau_base": tau,
        "max_epochs": epochs,
        "seed": seed,
        "output_dir": str(workdir),
        "name": f"tau{tau}-seed{seed}",
    }
    return {**values, "tau_schedule": "constant"} if tau == 1.0 else values


def run_one(tau: float, seed: int, epochs: int, workdir: Path) -> dict[str, Any]:
    from search_quality import knn_history

    from byol_tune.config import make_config
    from byol_tune.core.fit import fit

    values = sweep_values(tau, seed, epochs, workdir)
    start = time.perf_counter()
    history = knn_history(fit(make_config(values), progress_bar=False))
    return {
        "tau": tau,
        "seed": seed,
        "epochs": epochs,
        "history": history,
        "params": values,
        "minutes": (time.perf_counter() - start) / 60,
    }


def load(folder: Path) -> dict[float, list[dict[str, Any]]]:
    """The runs of ``folder`` by tau, seeds in order."""
    runs: dict[float, list[dict[str, Any]]] = {}
    for path in sorted(folder.glob("tau*-seed*.json")):
        run = json.loads(path.read_text())
        runs.setdefault(run["tau"], []).append(run)
    return {tau: sorted(runs[tau], key=lambda r: r["seed"]) for tau in sorted(runs)}


def label(tau: float) -> str:
    return "1 (constant)" if tau == 1.0 else f"{tau:g}"


def paired_gap(a: dict[int, float], b: dict[int, float]) -> float:
    """Mean of the per-seed differences ``a - b`` in standard errors (seeds pair up: same data, same
    initial weights; their spread is larger than tau's effect)."""
    diffs = [a[seed] - b[seed] for seed in sorted(set(a) & set(b))]
    if len(diffs) < 2:
        return math.nan  # no spread to compare with: never a verdict
    spread = statistics.stdev(diffs) / math.sqrt(len(diffs))
    return statistics.mean(diffs) / spread if spread else math.copysign(math.inf, statistics.mean(diffs))


def verdict(final: dict[float, dict[int, float]]) -> list[str]:
    """The paper's ranking against this sweep: do its best taus lead its worse ones by > 2 standard errors?"""
    best = [t for t in PAPER_BEST if len(final.get(t, {})) > 1]
    worse = [t for t in PAPER_WORSE if len(final.get(t, {})) > 1]
    if not best or not worse:
        return []
    top = max(best, key=lambda t: statistics.mean(final[t].values()))
    gaps = {t: paired_gap(final[top], final[t]) for t in worse}
    cells = [f"{label(t)} by {gap:.1f} standard errors" for t, gap in gaps.items()]
    if all(gap > 2 for gap in gaps.values()):
        words = "agrees"
    elif all(gap < -2 for gap in gaps.values()):
        words = "contradicts it"
    else:
        words = "cannot confirm it at this budget"
    leader = max(final, key=lambda t: statistics.mean(final[t].values()))
    return [
        f"- Against the BYOL paper (tau 0.99-0.996 best, 0.999 and 1 worse): tau {label(top)} leads "
        + ", ".join(cells)
        + f" (paired by seed); the sweep {words}. Highest mean: tau {label(leader)}."
    ]


def plot(final: dict[float, dict[int, float]], path: Path) -> Path:
    """``final``: each tau's last-epoch ``knn_top1`` by seed."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    xs = list(range(len(final)))
    by_seed: dict[int, list[tuple[int, float]]] = {}
    for x, per_seed in zip(xs, final.values(), strict=True):
        for seed, knn in per_seed.items():
            by_seed.setdefault(seed, []).append((x, knn))
    for seed, points in sorted(by_seed.items()):
        ax.plot(*zip(*points, strict=True), color="grey", lw=0.8, marker=".", label=f"seed {seed}")
    ax.plot(xs, [statistics.mean(per_seed.values()) for per_seed in final.values()], "o-", lw=2, label="mean")
    ax.set_xticks(xs, [label(t) for t in final])
    ax.set(xlabel="tau_base", ylabel=f"final {KNN}", title="Tau sweep: one line per seed, and their mean")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render(folder: Path, image_dir: Path) -> list[str]:
    runs = load(folder)
    if not runs:
        return []
    from byol_tune.config import make_config

    first = next(iter(runs.values()))[0]
    config = make_config(first["params"])  # the package's defaults filled in: what the runs trained
    final = {tau: {r["seed"]: r["history"][-1] for r in by_seed} for tau, by_seed in runs.items()}
    lines = [
        f"### Tau sweep ({folder.name}/)",
        "",
        f"One fixed config, {first['epochs']} epochs, only tau_base changed (`tau_sweep.py`: learning rate "
        f"{config.learning_rate:g}, weight decay {config.weight_decay:g}, heads "
        f"{config.projector_hidden_dim}-{config.projector_out_dim} / {config.predictor_hidden_dim}, "
        "tau rising to 1 over all steps; "
        "1 is a constant target):",
        "",
        f"| tau_base | seeds | final {KNN} (mean ± sd) | per seed | best epoch's {KNN} (mean ± sd) |",
        "|---|---|---|---|---|",
    ]
    for tau, by_seed in runs.items():
        bests = [max(r["history"]) for r in by_seed]
        lines.append(
            f"| {label(tau)} | {len(by_seed)} | {mean_sd(list(final[tau].values()))} | "
            f"{', '.join(f'{k:.1f}' for k in final[tau].values())} | {mean_sd(bests)} |"
        )
    image = plot(final, image_dir / f"{folder.name}.png")
    return [
        *lines,
        "",
        *verdict(final),
        "",
        f"![kNN against tau_base]({image.relative_to(image_dir.parent).as_posix()})",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--taus", type=float, nargs="+", default=list(TAUS))
    parser.add_argument("--epochs", type=int, default=8, help="the default space's max_epochs")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "tau_sweep")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="tau_sweep_"))
    for seed in args.seeds:
        for tau in args.taus:
            path = args.out / f"tau{tau}-seed{seed}.json"
            if path.exists():
                print(f"{path}: done already, kept", flush=True)
                continue
            run = run_one(tau, seed, args.epochs, workdir)
            path.write_text(json.dumps(run, indent=1, default=str))
            print(f"tau {tau} seed {seed}: final {KNN} {run['history'][-1]:.1f}, {run['minutes']:.1f} min")


if __name__ == "__main__":
    main()
