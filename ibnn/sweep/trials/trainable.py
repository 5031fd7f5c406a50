"""The one Ray Tune trainable of every sweep: one trial, or a pack of trials trained as one model,
checkpointed every epoch.

Per epoch: the trials run it (a pack's members together, ``ibnn.trial.pack.TrialPack``), each
record stamped with the host and Ray node it ran on; each trial's Parquet files are rewritten
with all of its rows so far; then every trial's state is saved into a temporary folder and
reported to Tune with ``tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))`` (a
solo trial's file is ``trial.pt``, a pack member's ``<trial_id>.pt``). A restarted Tune trial
(retry after a failure, or a resumed sweep) loads ``tune.get_checkpoint()`` and continues; since
its files are rewritten from the restored records, rows are never duplicated, and an unreadable
checkpoint restarts every trial of it from its first epoch. A trial that ends is concluded
(``ibnn.trial.core.conclude``: evaluated if "ok", else its failure recorded) before the report.

On a cluster the sweep joined, a trial first checks its node (``preflight.check_node``, once per
node): a worker that joined after the sweep's preflight may run other versions. A trial that
Ray gave a GPU which torch cannot use runs on the CPU and says so (``device`` "auto").
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from ibnn.sweep.cluster.datastage import fetch_dataset
from ibnn.sweep.cluster.preflight import check_node
from ibnn.sweep.trials.identity import (
    TrialSettings,
    flatten_config,
    load_trial_api,
    search_number,
    trial_id,
)
from ibnn.sweep.trials.packing import PACK, member_configs, pack_metrics
from ibnn.sweep.trials.session import node_check_dir, say_if_gpu_unused, staging_dir, stamp_node
from ibnn.sweep.trials.writer import TrialWriter, cost, objective

__all__ = ["CHECKPOINT_FILE", "TRAINABLE_NAME", "make_trainable", "prepared_config"]

CHECKPOINT_FILE = "trial.pt"  # a solo trial's checkpoint file (a pack member's: <trial_id>.pt)
TRAINABLE_NAME = "ibnn_trial"


def make_trainable(settings: TrialSettings) -> Callable[[dict[str, Any]], None]:
    """The Tune function trainable of a sweep (same name on every run, so restore finds it)."""

    def ibnn_trial(config: dict[str, Any]) -> None:
        _run(config, settings)

    ibnn_trial.__name__ = ibnn_trial.__qualname__ = TRAINABLE_NAME
    return ibnn_trial


def prepared_config(config: Mapping[str, Any], settings: TrialSettings) -> tuple[Any, str]:
    """A solo Tune config's TrialConfig, with the staged dataset fetched onto this node
    (verified; never downloaded), and its trial_id."""
    _, config_cls = load_trial_api(settings.trial_module)
    flat = flatten_config(config, settings.drop_keys)
    cfg = config_cls.from_dict(flat)
    if settings.data_stage:
        fetch_dataset(settings.data_stage, cfg.dataset, cfg.data_root)
        cfg = config_cls.from_dict({**flat, "download": False})
    return cfg, trial_id(cfg.to_dict())


class _Unit:
    """What one Tune trial trains: one trial, or a pack's members as one model."""

    def __init__(self, config: Mapping[str, Any], settings: TrialSettings) -> None:
        self.trial_cls, _ = load_trial_api(settings.trial_module)
        self.packed = PACK in config
        self.cfgs, self.writers = [], []
        for member in member_configs(config):
            cfg, tid = prepared_config(member, settings)
            self.cfgs.append(cfg)
            self.writers.append(TrialWriter(settings, tid, cfg.to_dict(), search_number(member)))
        self.trials: list[Any] = []  # built by fresh()

    def fresh(self) -> None:
        """Every trial built anew, at its first epoch."""
        self.trials = [self.trial_cls(cfg) for cfg in self.cfgs]

    def files(self) -> list[str]:
        """Each trial's checkpoint file name, in the order of ``self.trials``."""
        if not self.packed:
            return [CHECKPOINT_FILE]
        return [f"{w.tid}.pt" for w in self.writers]

    def restore(self, checkpoint: Any) -> None:
        """Loads every trial from Tune's checkpoint; an unreadable one restarts them all."""
        try:
            with checkpoint.as_directory() as d:
                for trial, name in zip(self.trials, self.files(), strict=True):
                    trial.load(os.path.join(d, name))
        except (OSError, EOFError) as err:
            # A resumed sweep may point at a checkpoint already rotated away (Tune's state can be
            # a few checkpoints behind when the driver dies). Restarting from scratch gives the
            # same rows.
            tids = ", ".join(w.tid for w in self.writers)
            print(
                f"trial {tids}: checkpoint {checkpoint.path} unreadable ({type(err).__name__}: "
                f"{err}); restarting from the first epoch",
                file=sys.stderr,
                flush=True,
            )
            self.fresh()

    def epochs(self) -> Any:
        """Runs the trials' epochs until each is done; yields each epoch's ``(index, record)``
        pairs (the record as kept in the trial's records)."""
        if not self.packed:
            (trial,) = self.trials
            while not trial.done:
                yield [(0, trial.run_epoch())]
            return
        from ibnn.trial.pack import TrialPack  # packs exist for ibnn.trial only

        index = {id(t): i for i, t in enumerate(self.trials)}
        pack = TrialPack(self.trials)
        while not pack.done:
            yield [(index[id(trial)], rec) for trial, rec in pack.run_epoch()]

    def save(self, folder: str) -> None:
        for trial, name in zip(self.trials, self.files(), strict=True):
            trial.save(os.path.join(folder, name))


def _conclude(writer: TrialWriter, trial: Any) -> str:
    """Writes the evaluations (and boundary) of a finished trial; returns its final status."""
    from ibnn.trial.core import conclude  # torch: imported on workers only

    result = conclude(trial, boundary=writer.settings.boundaries)
    if writer.settings.boundaries and result.boundary:
        writer.rows("boundaries", result.boundary)
    writer.rows("evals", [stamp_node(row) for row in result.evals])
    writer.error = result.error
    return result.status


def _metrics(writer: TrialWriter, trial: Any, cfg: Any, status: str) -> dict[str, Any]:
    rec = trial.records[-1] if trial.records else {}
    val = rec.get("val_acc", float("nan"))
    return {
        "trial_id": writer.tid,
        "epoch": int(rec.get("epoch", 0)),
        "epochs_done": len(trial.records),
        "epochs_total": int(cfg.warmup_epochs) + int(cfg.epochs),
        "val_acc": float("nan") if val is None else float(val),
        "objective": objective(trial.records),
        "status": status,
        "seed": int(cfg.seed),
        **cost(trial.records),
    }


def _train(unit: _Unit) -> None:
    """The epoch loop of a solo trial and of a pack: write, conclude, checkpoint, report."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        unit.restore(checkpoint)
    for trial, writer in zip(unit.trials, unit.writers, strict=True):
        if trial.done and not writer.has("evals"):  # restored from its final checkpoint
            writer.trial_row(_conclude(writer, trial), trial.records)
    scratch = staging_dir()
    for ran in unit.epochs():
        metrics = []
        for i, rec in ran:
            trial, writer = unit.trials[i], unit.writers[i]
            stamp_node(rec)
            writer.rows("epochs", trial.records)
            status = _conclude(writer, trial) if trial.done else trial.status
            writer.trial_row(status, trial.records)
            metrics.append(_metrics(writer, trial, unit.cfgs[i], status))
        report = pack_metrics(metrics) if unit.packed else metrics[0]
        with tempfile.TemporaryDirectory(prefix="ibnn-ckpt-", dir=scratch) as d:
            unit.save(d)
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(d))


def _run(config: dict[str, Any], settings: TrialSettings) -> None:
    from ray import tune

    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # per-epoch noise
    # UCN's "same" padding with an even kernel (k = 4 on 28 x 28) is intended (DESIGN section 3);
    # torch says so once per process, i.e. once per trial on a sweep's console.
    warnings.filterwarnings("ignore", "Using padding='same' with even kernel", UserWarning)

    if settings.driver_versions is not None:  # a node that joined late was never checked
        check_node(settings.storage, settings.driver_versions, node_check_dir())
    unit = _Unit(config, settings)
    writer = unit.writers[0]
    kept = writer.kept() if search_number(config) is not None else None
    if kept is not None:
        # Tune re-runs a search trial that had ended after its last snapshot (the driver died):
        # keep that ending (ok, pruned, or a numerical failure) instead of training it again,
        # where the scheduler could stop it and turn an "ok" into "pruned".
        keys = ("status", "objective", "epochs_done", "wall_s", "solver_iters")
        recorded = {k: kept[k] for k in keys if kept.get(k) is not None}
        tune.report({"trial_id": writer.tid, "seed": int(unit.cfgs[0].seed), **recorded})
        return
    unit.fresh()
    say_if_gpu_unused(writer.tid, unit.trials[0])  # a pack's members share their device
    _train(unit)
