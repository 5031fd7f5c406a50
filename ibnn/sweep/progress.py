"""One short driver line per finished trial epoch, with the sweep's progress (trials done/total).

Replaces Ray Tune's wide status tables (the runner sets ``verbose=0``).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from ray import tune

__all__ = ["SweepProgress"]

_DONE = ("TERMINATED", "ERROR")


class SweepProgress(tune.Callback):
    """Prints ``[done/total] trial epoch k/n val_acc ...`` lines as results arrive.

    Args:
        total: expected number of trials of the sweep.
        label_keys: config keys shown for each trial (the experiment's axes).
        stream: where to print (default stdout; looked up at print time).
    """

    def __init__(
        self, total: int, label_keys: Sequence[str] = (), stream: TextIO | None = None
    ) -> None:
        self.total = total
        self.label_keys = tuple(label_keys)
        self.stream = stream
        self.t0 = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "stream": None}

    def _print(self, text: str) -> None:
        out = self.stream or sys.stdout
        elapsed = time.monotonic() - self.t0
        print(f"[{_clock(elapsed)}] {text}", file=out, flush=True)

    def _done(self, trials: Sequence[Any], ending: Any = None) -> str:
        """``k/n trials done``, counting ``ending`` (a trial being completed right now) as done."""
        n = sum(1 for t in trials if t.status in _DONE or t is ending)
        return f"{n}/{self.total} trials done"

    def _label(self, trial: Any) -> str:
        cfg = dict(trial.config)
        cfg.update(cfg.pop("variant", None) or {})
        parts = [f"{cfg.get('family', '?')} seed={cfg.get('seed', '?')}"]
        parts += [f"{k}={_fmt(cfg[k])}" for k in self.label_keys if k in cfg]
        return " ".join(parts)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info):
        r = result
        self._print(
            f"{self._done(trials)} | {trial} {self._label(trial)} | "
            f"epoch {r.get('epoch')} ({r.get('epochs_done')}/{r.get('epochs_total')})"
            f" val_acc={_fmt(r.get('val_acc'))} best={_fmt(r.get('objective'))}"
            f" {r.get('status', '')}"
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info):
        self._print(f"{self._done(trials, trial)} | {trial} finished")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info):
        self._print(f"{self._done(trials, trial)} | {trial} FAILED (see the error above)")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info):
        self._print(f"{self._done(trials)} | {trial} failed; retrying from its last checkpoint")


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.4g}"
    return str(x)
