"""The driver's console: a status line every few seconds, or one line per trial epoch.

By default one line at most every ``every_s`` seconds: trials done (and how many of them
failed), running (and how many of those are past their last epoch, evaluating) and pending,
throughput (trial epochs per minute in this run) and the time left at that pace (epochs only:
"+ evaluations" while a trial evaluates). ``--verbose`` prints one line per finished trial
epoch instead. Retries and trials failing for good are always printed. Replaces Ray Tune's
wide status tables (the runner sets ``verbose=0``) and, unless ``--verbose``, Ray's and Tune's
own informational lines (``ray_logging_level``); their warnings and errors still reach the
console.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from ray import tune

from ibnn.results.schema import FAILED_STATUSES, TERMINAL_STATUSES

__all__ = ["SweepProgress", "ray_logging_level"]

# Ray's warnings that are notices on our console, dropped without --verbose: (logger, start).
_NOTICES = (
    # Ray >= 2.59 turns on token authentication for every new local cluster and says so
    (
        "ray._private.authentication.authentication_token_setup",
        "Token authentication is enabled for this Ray cluster",
    ),
    # at Ctrl-C: Tune's "Resume experiment with: Tuner.restore(...)" beside our --resume hint
    ("ray.tune.tune", "Experiment has been interrupted"),
    # at Ctrl-C: trials stopped before Tune wrote their result files; the trials table says it
    ("ray.tune.analysis.experiment_analysis", "Failed to fetch metrics"),
)


def _not_a_notice(record: logging.LogRecord) -> bool:
    return not any(record.getMessage().startswith(start) for _, start in _NOTICES)


def ray_logging_level(verbose: bool) -> int:
    """The level of the "ray" logger for ``ray.init(logging_level=...)``: INFO with --verbose,
    else WARNING, which drops Ray's start-up lines and Tune's bookkeeping ("Started a local Ray
    instance", "Wrote the latest version of all result files ..."); without --verbose the
    warnings of ``_NOTICES`` are dropped too (the token-authentication notice of a new local
    cluster; at Ctrl-C, Tune's ``Tuner.restore(...)`` hint and "Failed to fetch metrics")."""
    for name in {name for name, _ in _NOTICES}:
        logger = logging.getLogger(name)
        logger.removeFilter(_not_a_notice)
        if not verbose:
            logger.addFilter(_not_a_notice)
    return logging.INFO if verbose else logging.WARNING


class SweepProgress(tune.Callback):
    """Prints ``[done/total] trial epoch k/n val_acc ...`` lines as results arrive.

    Args:
        total: expected number of trials of the sweep.
        label_keys: config keys shown for each trial (the experiment's axes).
        stream: where to print (default stdout; looked up at print time).
    """

    unit = "trials"  # the default for callbacks pickled by older versions (a resumed sweep)
    completed: frozenset[str] | set[str] = frozenset()  # trials Tune completed (same reason)

    def __init__(
        self,
        total: int,
        label_keys: Sequence[str] = (),
        stream: TextIO | None = None,
        verbose: bool = True,
        every_s: float = 10.0,
        unit: str = "trials",
    ) -> None:
        self.total = total
        self.unit = unit  # what a Tune trial is: a trial, or a pack of trials
        self.label_keys = tuple(label_keys)
        self.stream = stream
        self.verbose = verbose
        self.every_s = every_s
        self.t0 = time.monotonic()
        self.last_line = -math.inf  # when the last status line was printed
        self.epochs_seen = 0  # trial epochs reported in this run
        self.progress: dict[str, tuple[int, int, str]] = {}  # trial -> (done, total, status)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "stream": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A resumed sweep's callback: its clock and pace start with this run."""
        self.__dict__.update(state)
        self.t0 = time.monotonic()
        self.last_line = -math.inf
        self.epochs_seen = 0

    def _print(self, text: str) -> None:
        out = self.stream or sys.stdout
        elapsed = time.monotonic() - self.t0
        print(f"[{_clock(elapsed)}] {text}", file=out, flush=True)

    def _done(self, trials: Sequence[Any], ending: Any = None) -> str:
        """``k/n trials done``, counting ``ending`` (a trial being completed right now) as done."""
        n = sum(1 for t in trials if self._ended(t) or t is ending)
        return f"{n}/{self.total} {self.unit} done"

    def _ended(self, trial: Any) -> bool:
        """Whether a trial has ended: an error, or terminated by Tune's completion (its schedule,
        or a search's scheduler) or with a final status. Not a trial Tune stopped at Ctrl-C:
        Tune marks those TERMINATED too (started or not), without ``on_trial_complete``, their
        last status "running" or none. A trial that ended in an earlier run of a resumed sweep
        has its final status in the ``last_result`` Tune restored."""
        if trial.status == "ERROR":
            return True
        return trial.status == "TERMINATED" and (
            str(trial) in self.completed or self._final(trial) in TERMINAL_STATUSES
        )

    def _label(self, trial: Any) -> str:
        cfg = dict(trial.config)
        members = cfg.pop("pack", None)
        cfg.update(cfg.pop("variant", None) or (members[0] if members else {}))
        parts = [f"{cfg.get('family', '?')} seed={cfg.get('seed', '?')}"]
        parts += [f"{k}={_fmt(cfg[k])}" for k in self.label_keys if k in cfg]
        return " ".join(parts)

    def status_line(self, trials: Sequence[Any]) -> str:
        """``done / running / pending / failed``, throughput and time left, in one line."""
        states = [t.status for t in trials]
        done = sum(self._ended(t) for t in trials)
        running = states.count("RUNNING")
        pending = self.total - done - running  # trials stopped at Ctrl-C wait to be resumed
        failed = states.count("ERROR") + sum(
            1 for t in trials if t.status == "TERMINATED" and self._final(t) in FAILED_STATUSES
        )
        elapsed = time.monotonic() - self.t0
        rate = self.epochs_seen / elapsed * 60 if elapsed > 0 else 0.0
        per_trial = max((n for _, n, _ in self.progress.values()), default=0)  # epochs
        left = (self.total - len(trials)) * per_trial  # trials a searcher has not created yet
        evaluating = 0  # running trials past their last epoch: their evaluations (attacks, ...)
        for t in trials:
            if not self._ended(t):
                k, n, _ = self.progress.get(str(t), (0, per_trial, ""))
                left += max(n - k, 0)
                evaluating += t.status == "RUNNING" and 0 < n <= k
        eta = _clock(left / rate * 60) if rate > 0 and per_trial else "?"
        if evaluating:  # the time left counts epochs; evaluations take what they take
            running_text = f"{running} running ({evaluating} evaluating)"
            eta += " + evaluations"
        else:
            running_text = f"{running} running"
        return (
            f"{done}/{self.total} {self.unit} done ({failed} failed) | {running_text} | "
            f"{pending} pending | {rate:.1f} epochs/min | ETA {eta}"
        )

    def _final(self, trial: Any) -> str:
        """The trial's last reported status: this run's, else the result Tune restored."""
        if str(trial) in self.progress:
            return self.progress[str(trial)][2]
        return str((getattr(trial, "last_result", None) or {}).get("status", ""))

    def _maybe_status(self, trials: Sequence[Any], force: bool = False) -> None:
        now = time.monotonic()
        if self.verbose or not (force or now - self.last_line >= self.every_s):
            return
        self.last_line = now
        self._print(self.status_line(trials))

    def on_step_end(self, iteration: int, trials: list, **info):
        self._maybe_status(trials)

    def on_experiment_end(self, trials: list, **info):
        self._maybe_status(trials, force=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info):
        r = result
        self.epochs_seen += 1
        self.progress[str(trial)] = (
            int(r.get("epochs_done") or 0),
            int(r.get("epochs_total") or 0),
            str(r.get("status", "")),
        )
        if not self.verbose:
            return
        self._print(
            f"{self._done(trials)} | {trial} {self._label(trial)} | "
            f"epoch {r.get('epoch')} ({r.get('epochs_done')}/{r.get('epochs_total')})"
            f" val_acc={_fmt(r.get('val_acc'))} best={_fmt(r.get('objective'))}"
            f" {r.get('status', '')}"
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info):
        self.completed = {*self.completed, str(trial)}
        if self.verbose:
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
