"""Optuna TPE that compares trials at one epoch when ASHA stops some of them early.

Ray's ``OptunaSearch`` tells Optuna a trial's *last* result. Under ASHA that is epoch 2 for a stopped trial
and the last epoch for a finished one, so TPE ranks every finished trial above every stopped one, whatever
their scores at the same epoch. ASHA lets the first trials finish unopposed (its rungs are still empty),
so TPE's "good" set is the first few trials, and it samples next to them. Here Optuna is told the score at
ASHA's first rung instead, which every trial reaches: the epoch ASHA itself ranks trials on.
"""

from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch


class RungOptunaSearch(OptunaSearch):
    """``OptunaSearch`` whose completed trials carry their objective at ``rung_epoch`` (or their last
    value, when they ended before it: a failed or budget-stopped trial)."""

    def __init__(self, *, rung_epoch: int, time_attr: str = "epoch", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rung_epoch = rung_epoch
        self.time_attr = time_attr
        self._at_rung: dict[str, float] = {}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if (
            trial_id not in self._at_rung
            and result.get(self.time_attr, 0) >= self.rung_epoch
            and self.metric in result
        ):
            self._at_rung[trial_id] = result[self.metric]
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        at_rung = self._at_rung.pop(trial_id, None)
        if result and not error and at_rung is not None:
            result = {**result, self.metric: at_rung}
        super().on_trial_complete(trial_id, result=result, error=error)
