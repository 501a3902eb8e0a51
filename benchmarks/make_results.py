"""Regenerate ``benchmarks/RESULTS.md`` from the benchmarks' JSON files (never from typed numbers).

``python benchmarks/make_results.py --run`` runs every benchmark (``bench_*.py --json results/NAME.json``)
and then writes RESULTS.md; without ``--run`` it only reads the JSON files already in ``--results``.
The search-quality section comes from ``search_quality/`` in that folder and its longer, earlier and
wide-space folders (``search_quality.py``, run apart: hours), its surrogate replay from
``search_surrogate.json`` (``search_surrogate.py``, about 8 minutes with its ``--check``) and
its tau sweep from ``tau_sweep/`` there (``tau_sweep.py``, about 25 minutes); their plots are written to
that folder too.
``--quick`` (with ``--run``) makes smoke figures, and RESULTS.md then says so at the top. ``--run --gpu``,
on a GPU machine, runs the GPU benchmarks instead (:data:`GPU_BENCHMARKS`: issue 5's benchmark 6,
section 7 of RESULTS.md); their JSON files sit beside the CPU ones, which they leave as they are.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import search_quality_report
import search_surrogate
import tau_sweep

HERE = Path(__file__).resolve().parent
# name -> (section title, script, its arguments besides --json/--quick)
BENCHMARKS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "step": (
        "1. Training step, model only: ours vs lightly's example loop",
        "bench_step.py",
        ("--rounds", "5", "--steps", "3"),
    ),
    "e2e": (
        "2. End to end: uint8 images -> augmentation -> step",
        "bench_e2e.py",
        ("--rounds", "5", "--steps", "4"),
    ),
    "e2e_small_cnn": (
        "2b. End to end with the embedded default's backbone (small_cnn, lightly's heads, batch 64)",
        "bench_e2e.py",
        ("--backbone", "small_cnn", "--batch-size", "64", "--rounds", "5", "--steps", "12"),
    ),
    "ema": ("3. EMA update of the target network", "bench_ema.py", ()),
    "knn": ("4. kNN evaluation", "bench_knn.py", ()),
    "ray": ("5. Ray overhead: plain trainer vs Tune trials through each runner", "bench_ray.py", ()),
}
# issue 5's benchmark 6, run on a GPU machine by ``--run --gpu`` (bench_step's CUDA defaults: batch 256 for
# resnet18 at 32x32, 128 for resnet50 at 224x224, torch.compile on, bf16 where supported)
GPU_BENCHMARKS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "gpu_step": ("7. GPU: training step, resnet18 at 32x32 (issue 5, benchmark 6)", "bench_step.py", ()),
    "gpu_step_resnet50": (
        "7b. GPU: training step, resnet50 at 224x224 (issue 5, benchmark 6)",
        "bench_step.py",
        ("--backbone", "resnet50"),
    ),
}
MACHINE_KEYS = (
    "platform",
    "processor",
    "cpu_count",
    "cpu_bf16_flags",
    "torch_threads",
    "python",
    "torch",
    "lightly",
    "gpu",
)


def run(results: Path, quick: bool, extra: list[str], gpu: bool = False) -> None:
    for name, (_, script, script_args) in (GPU_BENCHMARKS if gpu else BENCHMARKS).items():
        cmd = [sys.executable, str(HERE / script), *script_args, "--json", str(results / f"{name}.json")]
        cmd += extra
        cmd += ["--quick"] if quick else []
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


def shown(folder: Path) -> str:
    """``folder`` as RESULTS.md names it: from the repository root when it lies inside."""
    folder = folder.resolve()
    return folder.relative_to(HERE.parent).as_posix() if folder.is_relative_to(HERE.parent) else str(folder)


def describe(machine: dict[str, Any]) -> str:
    parts = [f"{key}: {machine[key]}" for key in MACHINE_KEYS if key in machine]
    return f"device **{machine['device']}**; " + "; ".join(parts)


LONG_TRIAL_GOAL = 1.10  # issue 5: a 3-minute trial's wall time <= 1.10x the plain trainer's


def long_trial_verdict(result: dict[str, Any]) -> list[str]:
    """The verdict under bench_ray's long-trial line: the median round's side of the goal, standing only
    when most rounds lie on that side (one slow minute of a shared machine moves one round, not most)."""
    rounds = result.get("figures", {}).get("long", {}).get("rounds", [])
    ratios = [r["wall_seconds"] / r["plain_seconds"] for r in rounds]
    if not ratios:
        return []
    met = statistics.median(ratios) <= LONG_TRIAL_GOAL
    agree = sum((ratio <= LONG_TRIAL_GOAL) == met for ratio in ratios)
    spread = f"{min(ratios):.2f}x to {max(ratios):.2f}x"
    if 2 * agree <= len(ratios):
        return [
            "",
            f"> The long-trial rounds disagree ({spread}): only {agree} of {len(ratios)} lie on the side of "
            f"the {LONG_TRIAL_GOAL:.2f}x goal their median is on, so that ratio is no verdict; rerun.",
        ]
    side = "<=" if met else ">"
    minutes = statistics.median(r["plain_seconds"] for r in rounds) / 60
    return [
        "",
        f"- Long trial ({minutes:.1f} minutes by the plain trainer; the goal names a 3-minute trial): "
        f"**{'MET' if met else 'MISSED'}** ({agree} of {len(ratios)} rounds {side} "
        f"{LONG_TRIAL_GOAL:.2f}x; rounds {spread}).",
    ]


def render(found: dict[str, dict[str, Any]], results: Path) -> str:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark results",
        "",
        f"Generated {now} by `python benchmarks/make_results.py` from `{shown(results)}/*.json`; "
        "do not edit by hand. How to run: [README.md](README.md).",
        "",
    ]
    if any(r["quick"] for r in found.values()):
        lines += ["> **Smoke run (`--quick`, tiny sizes): these figures are not results.**", ""]
    machines = {describe(r["machine"]) for r in found.values()}
    if len(machines) == 1:
        lines += ["Machine: " + machines.pop(), ""]
    lines += benchmark_sections(BENCHMARKS, found, results)
    lines += ["## 6. Search quality: the search against hand-set configs at equal trial-epochs", ""]
    lines += search_quality_report.render(
        results / "search_quality",
        results,
        search_quality_report.ROUNDS,
        longer=results / "search_quality_long",
        wide=tuple(results / name for name in search_quality_report.WIDE),
    )
    random_runs = [
        run
        for name in search_surrogate.CURRENT
        for run in search_quality_report.load(results / name).get("random_asha", {}).values()
    ]
    lines += search_surrogate.render(results / "search_surrogate.json", random_runs)
    lines += tau_sweep.render(results / "tau_sweep", results)
    lines += benchmark_sections(GPU_BENCHMARKS, found, results)
    return "\n".join(lines)


def benchmark_sections(
    benchmarks: dict[str, tuple[str, str, tuple[str, ...]]], found: dict[str, dict[str, Any]], results: Path
) -> list[str]:
    """A section per benchmark: its table as measured, else the command that measures it."""
    lines = []
    for name, (title, script, script_args) in benchmarks.items():
        lines += [f"## {title}", ""]
        if name not in found:
            command = " ".join(["python", f"benchmarks/{script}", *script_args])
            where = (
                "on a GPU machine (`make_results.py --run --gpu` runs both): "
                if name in GPU_BENCHMARKS
                else ""
            )
            lines += [f"Not measured yet: {where}`{command} --json {shown(results)}/{name}.json`.", ""]
            continue
        result = found[name]
        settings = ", ".join(f"{k}={v}" for k, v in result["settings"].items())
        lines += [f"Measured {result['date']}{' (--quick)' if result['quick'] else ''}; {settings}."]
        if len({describe(r["machine"]) for r in found.values()}) > 1:
            lines += ["Machine: " + describe(result["machine"]) + "."]
        lines += ["", result["markdown"], *long_trial_verdict(result), ""]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", action="store_true", help="run every benchmark first")
    p.add_argument("--quick", action="store_true", help="with --run: smoke sizes")
    p.add_argument("--gpu", action="store_true", help="with --run: the GPU benchmarks (section 7) instead")
    p.add_argument("--threads", type=int, help="with --run: passed to every benchmark")
    p.add_argument("--results", type=Path, default=HERE / "results", help="folder of the JSON files")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = p.parse_args()
    if args.run:
        args.results.mkdir(parents=True, exist_ok=True)
        if args.gpu:
            import torch  # only here: rendering alone needs no torch (seconds to import)

            if not torch.cuda.is_available():
                raise SystemExit("--gpu: torch sees no CUDA GPU here")
        run(args.results, args.quick, ["--threads", str(args.threads)] if args.threads else [], args.gpu)
    found = {
        name: json.loads((args.results / f"{name}.json").read_text())
        for name in [*BENCHMARKS, *GPU_BENCHMARKS]
        if (args.results / f"{name}.json").is_file()
    }
    if not found:
        raise SystemExit(f"no benchmark JSON in {args.results}; run with --run, or the scripts with --json")
    args.out.write_text(render(found, args.results))
    print(f"wrote {args.out} from {', '.join(sorted(found))}")


if __name__ == "__main__":
    main()
