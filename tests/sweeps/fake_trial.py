"""A fast stand-in for ``ibnn.trial`` with the same interface, for the runner's own tests.

It uses the real ``TrialConfig`` (so sweep configs are validated for real) but trains nothing:
each epoch draws its metrics from a seeded NumPy generator whose state is part of the checkpoint,
so "save -> load -> continue" gives the same records as an uninterrupted run only if the runner
restores checkpoints correctly. A record's ``wall_s`` holds the number of checkpoint loads so far
(a fake has no wall time worth reporting), so a test can tell a trial continued from a checkpoint
from one restarted from scratch. ``FAKE_TRIAL_EPOCH_S`` (seconds, default 0) slows epochs down so
a test can interrupt a sweep mid-way.
"""

from __future__ import annotations

import math
import os
import pickle
import time
from typing import Any

import numpy as np

from ibnn.trial.config import TrialConfig

__all__ = ["Trial", "TrialConfig"]


class Trial:
    """Same interface as ``ibnn.trial.Trial``: done, run_epoch, records, evaluate, boundary,
    save, load, status."""

    def __init__(self, cfg: TrialConfig) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng([cfg.seed, int(cfg.lam * 1000) % 1000, cfg.C])
        self.records: list[dict[str, Any]] = []
        self.status = "running"
        self.best_epoch: int | None = None
        self.best_val = -math.inf
        self.loads = 0  # checkpoint loads of this trial object

    @property
    def done(self) -> bool:
        return self.status != "running"

    def run_epoch(self) -> dict[str, Any]:
        if self.done:
            raise RuntimeError("finished")
        delay = float(os.environ.get("FAKE_TRIAL_EPOCH_S", "0"))
        if delay:
            time.sleep(delay)
        cfg = self.cfg
        k = len(self.records)
        epoch = k - cfg.warmup_epochs + 1
        warm = epoch <= 0
        u = self.rng.random(4)
        val_acc = float(0.5 + 0.4 * (1 - math.exp(-(k + 1) / 3)) + 0.05 * u[0])
        if not warm and val_acc > self.best_val:
            self.best_val, self.best_epoch = val_acc, epoch
        if k + 1 == cfg.warmup_epochs + cfg.epochs:
            self.status = "ok"
        rec = {
            "family": cfg.family,
            "dataset": cfg.dataset,
            "seed": cfg.seed,
            "L": cfg.L,
            "C": cfg.C,
            "n_params": 100 * cfg.C,
            "lam": float(cfg.lam),
            "p": float(cfg.p),
            "w_extent": cfg.w_extent,
            "lam_trainable": cfg.lam_trainable,
            "train_fraction": float(cfg.train_fraction),
            "label_noise": float(cfg.label_noise),
            "epoch": epoch,
            "phase": "warmup" if warm else "train",
            "lr": 0.001 * (k + 1),
            "train_loss": float(1.0 - 0.5 * u[1]),
            "train_acc": float(0.6 + 0.3 * u[2]),
            "val_loss": float(1.0 - val_acc),
            "val_acc": val_acc,
            "test_loss": float(1.0 - val_acc + 0.01),
            "test_acc": float(val_acc - 0.01 * u[3]),
            "solver_iters": math.nan if cfg.family == "sm" else 3.0,
            "solver_residual": math.nan if cfg.family == "sm" else 1e-6,
            "nonconverged_frac": math.nan if cfg.family == "sm" else 0.0,
            "wall_s": float(self.loads),
            "status": self.status,
            "selected": (not warm) and self.best_epoch == epoch,
        }
        self.records.append(rec)
        return rec

    def evaluate(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        base = {k: v for k, v in self.records[-1].items() if k in _MODEL_KEYS}
        rows = []
        for name in cfg.evals:
            strengths = cfg.pgd_eps if name.startswith("pgd") else (0.0,)
            for eps in strengths:
                rows.append(
                    base
                    | {
                        "attack": name,
                        "strength": float(eps),
                        "acc": self.best_val - eps,
                        "value": 0.1,
                    }
                )
        for lam in cfg.transfer_lams:
            rows.append(
                base
                | {
                    "family": "ibnn_transfer",
                    "lam": float(lam),
                    "attack": "clean",
                    "strength": 0.0,
                    "acc": self.best_val,
                    "value": 0.1,
                }
            )
        return rows

    def boundary(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        head = {"family": cfg.family, "seed": cfg.seed, "lam": float(cfg.lam), "p": float(cfg.p)}
        return [
            head | {"x0": a, "x1": b, "prob": 0.5 + 0.25 * (a - b)}
            for a in (-1.0, 0.0, 1.0)
            for b in (-1.0, 0.0, 1.0)
        ]

    def save(self, path: str) -> None:
        state = {k: getattr(self, k) for k in ("records", "status", "best_epoch", "best_val")}
        state["rng"] = self.rng.bit_generator.state
        state["cfg"] = self.cfg.to_dict()
        with open(path, "wb") as f:
            pickle.dump(state, f)

    def load(self, path: str) -> None:
        with open(path, "rb") as f:
            state = pickle.load(f)
        if not self.cfg.same_as_saved(state["cfg"]):
            raise ValueError("checkpoint of another config")
        for k in ("records", "status", "best_epoch", "best_val"):
            setattr(self, k, state[k])
        self.rng.bit_generator.state = state["rng"]
        self.loads += 1


_MODEL_KEYS = (
    "family",
    "dataset",
    "seed",
    "L",
    "C",
    "n_params",
    "lam",
    "p",
    "w_extent",
    "lam_trainable",
    "train_fraction",
    "label_noise",
)
