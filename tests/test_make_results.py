"""RESULTS.md's generator flags a long-trial measurement whose interleaved rounds disagree."""

from __future__ import annotations

import make_results


def ray_result(*rounds: tuple[float, float]) -> dict:
    return {"figures": {"long": {"rounds": [{"plain_seconds": p, "wall_seconds": w} for p, w in rounds]}}}


def test_agreeing_rounds_get_no_warning() -> None:
    assert make_results.rounds_disagree(ray_result((200.0, 210.0), (200.0, 220.0))) == []  # 1.05x, 1.10x
    assert make_results.rounds_disagree(ray_result((200.0, 400.0))) == []  # one round: nothing to compare
    assert make_results.rounds_disagree({"figures": {}}) == []  # other benchmarks


def test_disagreeing_rounds_are_flagged() -> None:
    lines = make_results.rounds_disagree(ray_result((200.0, 180.0), (200.0, 340.0)))  # 0.90x, 1.70x
    assert lines[1].startswith("> The long-trial rounds disagree (0.90x to 1.70x, more than 0.1 apart)")
