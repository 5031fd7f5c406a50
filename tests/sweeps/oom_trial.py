"""The real ``ibnn.trial.Trial`` with a ``torch.OutOfMemoryError`` injected once per trial, for
the runner's test that out-of-memory is retried (not recorded as a solver failure).

The error is raised inside the real ``run_epoch`` (by a one-shot forward hook on the model's
first linear layer), so it passes through the trial's own exception handling. Its config adds
``fail_after_epoch`` and ``fault_dir`` (as ``faulty_trial``); every epoch a trial object runs is
appended to ``<fault_dir>/<key>.log``, so a test can tell a retry that continued from its
checkpoint from one that started over.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ibnn import trial as real
from tests.sweeps import faulty_trial

__all__ = ["Trial", "TrialConfig"]


@dataclass(frozen=True)
class TrialConfig(faulty_trial.TrialConfig):
    """The real TrialConfig plus where and when to run out of memory."""


class Trial(real.Trial):
    """``ibnn.trial.Trial`` whose model runs out of memory once, at the configured point."""

    def _key(self) -> str:
        text = json.dumps(self.cfg.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(text).hexdigest()[:12]

    def run_epoch(self) -> dict[str, Any]:
        cfg = self.cfg
        folder = Path(cfg.fault_dir)
        folder.mkdir(parents=True, exist_ok=True)
        last = self.records[-1]["epoch"] if self.records else None
        marker = folder / f"{self._key()}.oom"
        if cfg.fail_after_epoch is not None and last == cfg.fail_after_epoch:
            if not marker.exists():
                marker.touch()
                _oom_once(next(m for m in self.model.modules() if isinstance(m, nn.Linear)))
        rec = super().run_epoch()
        with open(folder / f"{self._key()}.log", "a") as f:
            f.write(f"{rec['epoch']}\n")
        return rec


def _oom_once(module: nn.Module) -> None:
    def hook(mod: nn.Module, args: Any) -> None:
        handle.remove()
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")

    handle = module.register_forward_pre_hook(hook)
