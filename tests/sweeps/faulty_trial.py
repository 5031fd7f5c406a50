"""The fake trial with a failure injected once per trial, for the runner's fault-tolerance tests.

Its config adds two fields to the real ``TrialConfig``: ``fail_after_epoch`` (the trial raises
``InjectedFailure`` when asked for the epoch after this one, i.e. after that epoch's rows and
checkpoint were written) and ``fault_dir`` (a folder where a marker per trial records that the
failure happened, so a retried trial does not fail again).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.sweeps import fake_trial

__all__ = ["InjectedFailure", "Trial", "TrialConfig"]


class InjectedFailure(RuntimeError):
    """The failure a faulty trial raises once."""


@dataclass(frozen=True)
class TrialConfig(fake_trial.TrialConfig):
    """The real TrialConfig plus where and when to fail."""

    fail_after_epoch: int | None = None  # fail once when asked for the epoch after this one
    fault_dir: str = ""  # folder of the per-trial markers ("already failed once")


class Trial(fake_trial.Trial):
    """``fake_trial.Trial`` that raises InjectedFailure once, at the configured point."""

    def run_epoch(self) -> dict[str, Any]:
        cfg = self.cfg
        last = self.records[-1]["epoch"] if self.records else None
        if cfg.fail_after_epoch is not None and last == cfg.fail_after_epoch:
            key = json.dumps(cfg.to_dict(), sort_keys=True).encode()
            marker = Path(cfg.fault_dir) / f"{hashlib.sha256(key).hexdigest()[:12]}.{last}"
            if not marker.exists():
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
                raise InjectedFailure(f"injected failure after epoch {last}")
        return super().run_epoch()
