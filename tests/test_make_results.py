"""RESULTS.md's generator judges the long-trial goal from its interleaved rounds, not from one."""

from __future__ import annotations

from pathlib import Path

import make_results


def ray_result(*rounds: tuple[float, float]) -> dict:
    return {"figures": {"long": {"rounds": [{"plain_seconds": p, "wall_seconds": w} for p, w in rounds]}}}


def test_rounds_on_one_side_give_the_verdict() -> None:
    head = "- Long trial (3.3 minutes by the plain trainer; the goal names a 3-minute trial): "
    met = make_results.long_trial_verdict(ray_result((200.0, 204.0), (200.0, 196.0), (200.0, 226.0)))
    assert met == ["", head + "**MET** (2 of 3 rounds <= 1.10x; rounds 0.98x to 1.13x)."]
    missed = make_results.long_trial_verdict(ray_result((200.0, 240.0), (200.0, 260.0)))
    assert missed == ["", head + "**MISSED** (2 of 2 rounds > 1.10x; rounds 1.20x to 1.30x)."]
    short = make_results.long_trial_verdict(ray_result((150.0, 157.5)))
    assert short == [
        "",
        "- Long trial (2.5 minutes by the plain trainer; the goal names a 3-minute trial): **MET** (1 of 1 "
        "rounds <= 1.10x; rounds 1.05x to 1.05x).",
    ]
    assert make_results.long_trial_verdict({"figures": {}}) == []  # other benchmarks


def test_rounds_split_by_the_goal_are_no_verdict() -> None:
    lines = make_results.long_trial_verdict(ray_result((200.0, 180.0), (200.0, 340.0)))  # 0.90x, 1.70x
    assert lines[1] == (
        "> The long-trial rounds disagree (0.90x to 1.70x): only 1 of 2 lie on the side of the 1.10x goal "
        "their median is on, so that ratio is no verdict; rerun."
    )


def test_render_reads_every_section_from_the_results_folder_it_is_given(tmp_path: Path) -> None:
    ema = {
        "quick": True,
        "machine": {"device": "cpu", "cpu_count": 2},
        "date": "2026-11-24T00:00:00+00:00",
        "settings": {"rounds": 1},
        "markdown": "| EMA update | ms |",
        "figures": {},
    }
    text = make_results.render({"ema": ema}, tmp_path)
    assert f"from `{tmp_path.resolve()}/*.json`" in text
    assert (
        "Not measured yet: `python benchmarks/bench_step.py --rounds 5 --steps 3 --json "
        + f"{tmp_path.resolve()}/step.json`."
        in text
    )
    assert (
        "Not measured yet: on a GPU machine (`make_results.py --run --gpu` runs both): `python "
        f"benchmarks/bench_step.py --backbone resnet50 --json {tmp_path.resolve()}/gpu_step_resnet50.json`."
        in text
    )
    # the repository's own search-quality and tau-sweep results are not in this folder, so not in the page
    assert "Not measured yet: `python benchmarks/search_quality.py` (writes search_quality/)." in text
    assert "Tau sweep" not in text
    assert list(tmp_path.iterdir()) == []  # nothing plotted into a folder with no runs
    assert make_results.shown(make_results.HERE / "results") == "benchmarks/results"
