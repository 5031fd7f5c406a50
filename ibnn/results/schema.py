"""The results contract: every Parquet table's schema, its column names and the status values.

Defined once, here, and used by the writer (``ibnn.results.storage``, which the sweep runner
calls) and by the reader (``analysis``). This module imports neither torch nor ray.

Tables under ``<storage>/<sweep>/`` (one file per trial per table, ``<table>/<trial_id>.parquet``):

- ``epochs``: one row per trial and epoch (warm-up epochs have phase "warmup", epoch <= 0);
- ``evals``: one row per trial, evaluation (``attack``) and strength;
- ``boundaries``: toy2d decision-boundary grids;
- ``trials``: one row per trial, its status and config (the writer's registry).

A trial's status (``STATUSES``) is "running" while it trains and one of the terminal values once
it ended. "ok" trials finished their schedule; "pruned" ones were stopped early by a search's
scheduler (ASHA), a verdict on the configuration, not a failure; FAILED_STATUSES are the trials
that ended early for a numerical reason (``solver_failed`` for an IBNN, ``diverged`` for a
non-finite SM loss) or for good after their retries (``error``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

__all__ = [
    "DIVERGED",
    "ERROR",
    "FAILED_STATUSES",
    "IDENTITY",
    "OK",
    "PRUNED",
    "REQUIRED",
    "ROW_KEYS",
    "RUNNING",
    "SCHEMAS",
    "SOLVER_FAILED",
    "STATUSES",
    "TABLES",
    "TERMINAL_STATUSES",
    "check_table",
]

# Trial status values (epochs.status of the last row, trials.status).
RUNNING = "running"  # still training (or its driver died: see the sweep's status)
OK = "ok"  # finished its schedule; evaluated
SOLVER_FAILED = "solver_failed"  # the IBNN solve failed (non-convergence) in training or eval
DIVERGED = "diverged"  # non-finite loss
ERROR = "error"  # failed for good after its retries (an exception the trial did not handle)
PRUNED = "pruned"  # stopped early by the search's scheduler; its epochs so far are kept
STATUSES: tuple[str, ...] = (RUNNING, OK, PRUNED, SOLVER_FAILED, DIVERGED, ERROR)
FAILED_STATUSES: tuple[str, ...] = (SOLVER_FAILED, DIVERGED, ERROR)
TERMINAL_STATUSES: tuple[str, ...] = (OK, PRUNED, *FAILED_STATUSES)


@dataclass(frozen=True)
class _Column:
    name: str  # column name
    type: pa.DataType  # fixed Arrow type
    required: bool  # the row (after context filling) must hold this key


def _schema(columns: Iterable[_Column]) -> tuple[pa.Schema, frozenset[str]]:
    cols = list(columns)
    return pa.schema([pa.field(c.name, c.type) for c in cols]), frozenset(
        c.name for c in cols if c.required
    )


_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()

# Columns every table starts with; filled by the writer, never by the trial.
_IDENTITY = [
    _Column("sweep", _S, True),
    _Column("experiment", _S, True),
    _Column("trial_id", _S, True),
]
# Trial-level context; missing keys are filled from the trial's config.
_MODEL = [
    _Column("family", _S, True),
    _Column("dataset", _S, True),
    _Column("seed", _I, True),
    _Column("L", _I, False),
    _Column("C", _I, False),
    _Column("n_params", _I, False),
    _Column("lam", _F, True),
    _Column("p", _F, True),
    _Column("w_extent", _I, False),  # null = global w (every position of the channel)
    _Column("lam_trainable", _B, False),
]
_DATA = [
    _Column("train_fraction", _F, False),
    _Column("label_noise", _F, False),
    _Column("selection", _S, False),  # model selection: "val" or "paper" (best test loss)
    _Column("n_train", _I, False),  # training samples actually used
]

# Where a row was computed (provenance; older sweeps lack these columns: null).
_WHERE = [
    _Column("node", _S, False),  # host name of the machine
    _Column("node_id", _S, False),  # Ray node id ("" outside Ray)
    _Column("device", _S, False),  # "cpu" or the GPU's name, e.g. "NVIDIA H200"
]

_EPOCHS = [
    *_IDENTITY,
    *_MODEL,
    *_DATA,
    _Column("epoch", _I, True),
    _Column("phase", _S, False),
    _Column("lr", _F, True),
    _Column("train_loss", _F, True),
    _Column("train_acc", _F, True),
    _Column("val_loss", _F, True),
    _Column("val_acc", _F, True),
    _Column("test_loss", _F, True),
    _Column("test_acc", _F, True),
    _Column("solver_iters", _F, True),
    _Column("solver_residual", _F, True),
    _Column("nonconverged_frac", _F, True),
    _Column("wall_s", _F, True),
    _Column("status", _S, False),  # one of STATUSES
    _Column("error", _S, False),  # message of what ended a failed trial
    _Column("selected", _B, False),  # this epoch is the model-selection epoch so far
    _Column("selected_epoch", _I, False),
    _Column("lam_learned", _F, False),  # current lam (mean over IBNN layers), NaN for SM
    _Column("solver_iters_max", _F, False),
    _Column("solver_backward_iters", _F, False),
    _Column("eval_nonconverged_frac", _F, False),  # non-converged fraction on the test split
    *_WHERE,
]
_EVALS = [
    *_IDENTITY,
    *_MODEL,
    *_DATA,
    _Column("epoch", _I, False),  # the selected epoch that was evaluated
    _Column("attack", _S, True),
    _Column("strength", _F, True),
    _Column("acc", _F, True),  # NaN for jacobian_norm and curvature
    _Column("value", _F, False),  # loss, or the norm / curvature
    _Column("n", _I, False),  # test samples evaluated
    _Column("nonconverged_frac", _F, False),
    *_WHERE,
]
_BOUNDARIES = [
    *_IDENTITY,
    _Column("family", _S, True),
    _Column("seed", _I, True),
    _Column("lam", _F, True),
    _Column("p", _F, True),
    _Column("x0", _F, True),
    _Column("x1", _F, True),
    _Column("prob", _F, True),
]
_TRIALS = [
    *_IDENTITY,
    _Column("family", _S, True),
    _Column("dataset", _S, True),
    _Column("seed", _I, True),
    _Column("status", _S, True),  # one of STATUSES
    _Column("epochs_done", _I, True),  # records written so far (warm-up epochs included)
    _Column("objective", _F, True),  # val_acc at the selected epoch so far
    _Column("config_json", _S, True),  # the full trial config, JSON
    _Column("updated", _S, True),  # ISO timestamp of the last write
    _Column("error", _S, False),  # what ended a failed trial
    _Column("wall_s", _F, False),  # wall time of its epochs so far, seconds (cost)
    _Column("solver_iters", _F, False),  # mean forward solver iterations per main epoch (cost)
    _Column("search_number", _I, False),  # Optuna trial number of a search trial
]

_BUILT = {
    "epochs": _schema(_EPOCHS),
    "evals": _schema(_EVALS),
    "boundaries": _schema(_BOUNDARIES),
    "trials": _schema(_TRIALS),
}
TABLES: tuple[str, ...] = tuple(_BUILT)
SCHEMAS: dict[str, pa.Schema] = {name: built[0] for name, built in _BUILT.items()}
# Columns a row must hold once the writer has filled in the trial's context.
REQUIRED: dict[str, frozenset[str]] = {name: built[1] for name, built in _BUILT.items()}
# Columns the writer always fills itself (a reader may fill them from the file's location).
IDENTITY: tuple[str, ...] = tuple(c.name for c in _IDENTITY)
# What identifies a row within a sweep: a resumed or retried trial rewrites its rows, so each
# key exists once (a reader that still meets duplicates keeps the last one).
ROW_KEYS: dict[str, tuple[str, ...]] = {
    "epochs": ("trial_id", "phase", "epoch"),
    "evals": ("trial_id", "family", "lam", "attack", "strength"),
    "boundaries": ("trial_id", "x0", "x1"),
    "trials": ("trial_id",),
}


def check_table(table: str) -> None:
    """Raise ValueError unless ``table`` is one of TABLES."""
    if table not in _BUILT:
        raise ValueError(f"unknown results table {table!r}; valid tables: {', '.join(TABLES)}")
