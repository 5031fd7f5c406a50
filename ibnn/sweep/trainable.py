"""The one Ray Tune trainable of every sweep: a trial runner that checkpoints every epoch.

Per epoch: ``trial.run_epoch()`` (its record stamped with the host and Ray node it ran on),
then the trial's Parquet files are rewritten with all of its
rows so far, then the trial state is saved into a temporary folder and reported to Tune with
``tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))``. A restarted trial
(retry after a failure, or a resumed sweep) loads ``tune.get_checkpoint()`` and continues; since
its files are rewritten from the restored records, rows are never duplicated. After the last
epoch the evaluations (and, for toy2d, the decision boundary) are written before the final report.

On a cluster the sweep joined, a trial first checks its node (``preflight.check_node``, once per
node): a worker that joined after the sweep's preflight may run other versions. A trial that
Ray gave a GPU which torch cannot use runs on the CPU and says so (``device`` "auto").
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import socket
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ibnn.results import Storage
from ibnn.results.schema import DIVERGED, ERROR, OK, PRUNED, SOLVER_FAILED
from ibnn.sweep.datastage import fetch_dataset
from ibnn.sweep.meta import now
from ibnn.sweep.packing import PACK, member_configs
from ibnn.sweep.preflight import check_node

__all__ = [
    "RUNTIME_KEYS",
    "TrialNamer",
    "TrialSettings",
    "load_trial_api",
    "SEARCH_NUMBER",
    "search_number",
    "make_trainable",
    "mark_failed",
    "mark_status",
    "objective",
    "prepared_config",
    "resolve",
    "flatten_config",
    "trial_id",
]

# Config fields that change where or how fast a trial runs, not its numbers: left out of trial_id.
RUNTIME_KEYS = frozenset({"data_root", "download", "device", "num_workers", "eval_batch_size"})
CHECKPOINT_FILE = "trial.pt"
TRAINABLE_NAME = "ibnn_trial"
# Config key a search adds to each trial: its Optuna trial number (recorded, not a config field).
SEARCH_NUMBER = "search_number"
# Statuses a re-run trial keeps instead of training again (an "error" trial is retried).
_KEPT = (OK, PRUNED, SOLVER_FAILED, DIVERGED)


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a sweep shares (fixed for the sweep's lifetime)."""

    storage: str  # results root, path or URI
    sweep: str  # sweep folder name
    experiment: str  # experiment name (the spec's name)
    trial_module: str = "ibnn.trial"  # module providing Trial and TrialConfig
    drop_keys: tuple[str, ...] = ()  # search-only keys of the config, not TrialConfig fields
    boundaries: bool = False  # also write trial.boundary() (toy2d)
    data_stage: str = ""  # where the driver staged the dataset (fetched per node); "": nowhere
    # The driver's Ray, torch and Python versions, checked once per node before its first trial
    # (``preflight.check_node``); None on one machine (its own Ray instance: nothing to check).
    driver_versions: dict[str, Any] | None = None


def load_trial_api(module: str) -> tuple[type, type]:
    """The ``(Trial, TrialConfig)`` classes of a trial module (default ``ibnn.trial``)."""
    mod = importlib.import_module(module)
    missing = [n for n in ("Trial", "TrialConfig") if not hasattr(mod, n)]
    if missing:
        raise ValueError(f"trial module {module!r} lacks {missing}; it must define both")
    return mod.Trial, mod.TrialConfig


def flatten_config(config: Mapping[str, Any], drop_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """The TrialConfig fields of a Tune config.

    The grid puts each trial's own values under ``config["variant"]``; they are merged over the
    sweep's constants. ``drop_keys`` (an Optuna space's helper parameters) are removed; every
    other key must be a field of the trial module's TrialConfig (checked by its ``from_dict``).
    """
    flat = {k: v for k, v in config.items() if k != "variant"}
    flat.update(config.get("variant") or {})
    for k in (*drop_keys, SEARCH_NUMBER):
        flat.pop(k, None)
    return flat


def trial_id(cfg_dict: Mapping[str, Any]) -> str:
    """Deterministic id of a trial: a hash of its normalised config (runtime keys left out)."""
    ident = {k: v for k, v in cfg_dict.items() if k not in RUNTIME_KEYS}
    text = json.dumps(ident, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def objective(records: list[Mapping[str, Any]]) -> float:
    """Validation accuracy at the model-selection epoch so far (last record if none selected)."""
    if not records:
        return float("nan")
    chosen = [r for r in records if r.get("selected")]
    value = (chosen[-1] if chosen else records[-1]).get("val_acc")
    return float("nan") if value is None else float(value)


def resolve(config: Mapping[str, Any], settings: TrialSettings) -> tuple[str, dict[str, Any]]:
    """A Tune config's trial_id and normalised TrialConfig dict."""
    _, config_cls = load_trial_api(settings.trial_module)
    flat = flatten_config(config, settings.drop_keys)
    cfg_dict = config_cls.from_dict(flat).to_dict()
    return trial_id(cfg_dict), cfg_dict


class TrialNamer:
    """Names Tune trials after the deterministic trial_id (``<family>_s<seed>_<trial_id>``).

    Args:
        settings: the sweep's trial settings.
        folder: name trial folders instead: the name plus Tune's own trial id, so that two
            search trials that happen to draw the same config never share a folder.
    """

    def __init__(self, settings: TrialSettings, folder: bool = False) -> None:
        self.settings = settings
        self.folder = folder

    def __call__(self, trial: Any) -> str:
        members = member_configs(trial.config)
        tid, cfg = resolve(members[0], self.settings)
        name = f"{cfg['family']}_s{cfg['seed']}_{tid}"
        if PACK in trial.config:
            name = f"pack{len(members)}_{name}"
        return f"{name}_{trial.trial_id}" if self.folder else name


def search_number(config: Mapping[str, Any]) -> int | None:
    """The Optuna trial number a search or confirmation trial belongs to (None in a grid)."""
    return {**config, **(config.get("variant") or {})}.get(SEARCH_NUMBER)


def mark_status(
    settings: TrialSettings, config: Mapping[str, Any], status: str, error: str = ""
) -> None:
    """Records a trial's final status in the trials table from the driver (the trial's process
    is gone): "error" after its last retry, "pruned" when the scheduler stopped it. For a pack:
    every member that had not ended by itself."""
    if PACK in config:
        for member in member_configs(config):
            tid, cfg_dict = resolve(member, settings)
            if _Writer(settings, tid, cfg_dict).kept() is None:
                mark_status(settings, member, status, error)
        return
    tid, cfg_dict = resolve(config, settings)
    writer = _Writer(settings, tid, cfg_dict, search_number(config))
    records = []
    if writer.has("epochs"):
        records = writer.st.read_trial(settings.sweep, "epochs", tid).to_pylist()
    writer.error = error
    writer.trial_row(status, records)


def mark_failed(settings: TrialSettings, config: Mapping[str, Any], error: str) -> None:
    """Records in the trials table that a trial failed for good (after its retries)."""
    mark_status(settings, config, ERROR, error)


def make_trainable(settings: TrialSettings) -> Callable[[dict[str, Any]], None]:
    """The Tune function trainable of a sweep (same name on every run, so restore finds it)."""

    def ibnn_trial(config: dict[str, Any]) -> None:
        _run(config, settings)

    ibnn_trial.__name__ = ibnn_trial.__qualname__ = TRAINABLE_NAME
    return ibnn_trial


class _Writer:
    """Writes one trial's tables under the sweep folder."""

    def __init__(
        self,
        settings: TrialSettings,
        tid: str,
        cfg_dict: dict[str, Any],
        search_number: int | None = None,
    ) -> None:
        self.st = Storage(settings.storage)
        self.search_number = search_number
        self.settings = settings
        self.tid = tid
        self.cfg_dict = cfg_dict
        self.context = {**cfg_dict, "experiment": settings.experiment}
        self.error = ""  # why evaluation failed, if it did

    def rows(self, table: str, rows: list[Mapping[str, Any]]) -> None:
        self.st.write_rows(self.settings.sweep, table, self.tid, rows, self.context)

    def has(self, table: str) -> bool:
        return self.st.exists(self.settings.sweep, table, f"{self.tid}.parquet")

    def trial_row(self, status: str, records: list[Mapping[str, Any]]) -> None:
        row = {
            "status": status,
            "epochs_done": len(records),
            "objective": objective(records),
            "config_json": json.dumps(self.cfg_dict, sort_keys=True),
            "updated": now(),
            "error": self.error or _last(records, "error"),
            **cost(records),
            "search_number": self.search_number,
        }
        self.rows("trials", [row])

    def kept(self) -> dict[str, Any] | None:
        """The trial's row if it already ended with a status a re-run keeps, else None."""
        if not self.has("trials"):
            return None
        row = self.st.read_trial(self.settings.sweep, "trials", self.tid).to_pylist()[0]
        if row["status"] not in _KEPT or (row["status"] == OK and not self.has("evals")):
            return None
        return row


def cost(records: list[Mapping[str, Any]]) -> dict[str, float]:
    """A trial's cost so far: total wall time (s) and mean solver iterations per main epoch
    (NaN for SM and IBNN-lite, which run no solver)."""
    wall = sum(float(r.get("wall_s") or 0.0) for r in records)
    iters = [
        float(r["solver_iters"])
        for r in records
        if r.get("phase", "train") == "train" and _number(r.get("solver_iters"))
    ]
    return {"wall_s": wall, "solver_iters": sum(iters) / len(iters) if iters else float("nan")}


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x


def _metrics(tid: str, trial: Any, cfg: Any, status: str) -> dict[str, Any]:
    rec = trial.records[-1] if trial.records else {}
    val = rec.get("val_acc", float("nan"))
    return {
        "trial_id": tid,
        "epoch": int(rec.get("epoch", 0)),
        "epochs_done": len(trial.records),
        "epochs_total": int(cfg.warmup_epochs) + int(cfg.epochs),
        "val_acc": float("nan") if val is None else float(val),
        "objective": objective(trial.records),
        "status": status,
        "seed": int(cfg.seed),
        **cost(trial.records),
    }


def _experiment_dir() -> str | None:
    """This node's local folder of the sweep run (None outside a Tune session)."""
    from ray import tune

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # outside a session Ray warns and returns None
        trial_dir = tune.get_context().get_trial_dir()
    if trial_dir is None:
        return None
    return os.path.dirname(os.path.dirname(os.path.abspath(trial_dir)))


def _node_check_dir() -> str | None:
    """Where ``check_node`` remembers that this node passed (per node and sweep run)."""
    experiment = _experiment_dir()
    return None if experiment is None else os.path.join(experiment, "node_checks")


def _say_if_gpu_unused(tid: str, trial: Any) -> None:
    """Says on the console when Ray gave a trial a GPU that torch cannot use there.

    The trial then runs on the CPU (config ``device`` "auto", what GPU sweeps use) and its rows
    record ``device`` "cpu": results stay correct, but slower than the sweep planned for.
    """
    import ray

    gpus = ray.get_gpu_ids() if ray.is_initialized() else []
    device = getattr(trial, "device", None)
    if gpus and getattr(device, "type", "") == "cpu":
        print(
            f"trial {tid}: Ray assigned it GPU {gpus} on node {socket.gethostname()} "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}) but torch "
            f"cannot use CUDA there (torch.cuda.is_available() is False); it runs on the CPU "
            f"and its rows record device 'cpu'",
            file=sys.stderr,
            flush=True,
        )


def _staging_dir() -> str | None:
    """Where checkpoints are staged before Tune persists them (None outside a Tune session).

    Inside Ray's session folder, so a worker killed mid-epoch leaves its staging folder there
    rather than loose in /tmp, but beside the experiment's ``driver_artifacts`` rather than in
    the trial's folder there (``get_trial_dir()``): Tune uploads that folder with its
    experiment state, and a staging folder removed during the upload made it fail loudly
    ("Saving experiment state ... failed", FileNotFoundError on ``ibnn-ckpt-*/trial.pt``).
    """
    from ray import tune

    experiment = _experiment_dir()
    if experiment is None:
        return None
    trial_dir = tune.get_context().get_trial_dir()
    path = os.path.join(experiment, "checkpoint_staging", os.path.basename(trial_dir))
    os.makedirs(path, exist_ok=True)
    return path


def _finish(writer: _Writer, trial: Any) -> str:
    """Writes the evaluations (and boundary) of a finished trial; returns its final status.

    As in ``ibnn.trial.run_trial``: only an "ok" trial is evaluated, and a solve failing under
    attack ends it as "solver_failed" (its evals file is then empty) instead of crashing.
    """
    from ibnn.trial.failures import NUMERICAL_FAILURES  # torch: imported on workers only

    status, evals = trial.status, []
    if status == "ok":
        try:
            evals = [_where(row) for row in trial.evaluate()]
            if writer.settings.boundaries:
                writer.rows("boundaries", trial.boundary())
        except NUMERICAL_FAILURES as err:  # others (out of memory, device) go to Tune: retried
            status = "solver_failed"
            writer.error = f"evaluation: {type(err).__name__}: {err}"
    writer.rows("evals", evals)
    return status


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


def _run(config: dict[str, Any], settings: TrialSettings) -> None:
    from ray import tune

    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # per-epoch noise
    # UCN's "same" padding with an even kernel (k = 4 on 28 x 28) is intended (DESIGN section 3);
    # torch says so once per process, i.e. once per trial on a sweep's console.
    warnings.filterwarnings("ignore", "Using padding='same' with even kernel", UserWarning)

    if settings.driver_versions is not None:  # a node that joined late was never checked
        check_node(settings.storage, settings.driver_versions, _node_check_dir())
    if PACK in config:  # several grid trials trained as one model
        from ibnn.sweep.packing import run_pack_trial

        run_pack_trial(config, settings)
        return
    trial_cls, _ = load_trial_api(settings.trial_module)
    cfg, tid = prepared_config(config, settings)
    cfg_dict = cfg.to_dict()
    writer = _Writer(settings, tid, cfg_dict, search_number(config))
    kept = writer.kept() if search_number(config) is not None else None
    if kept is not None:
        # Tune re-runs a search trial that had ended after its last snapshot (the driver died):
        # keep that ending (ok, pruned, or a numerical failure) instead of training it again,
        # where the scheduler could stop it and turn an "ok" into "pruned".
        tune.report({"trial_id": tid, "seed": int(cfg.seed), **_kept_metrics(kept)})
        return
    trial = trial_cls(cfg)
    _say_if_gpu_unused(tid, trial)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        try:
            with checkpoint.as_directory() as d:
                trial.load(os.path.join(d, CHECKPOINT_FILE))
        except (OSError, EOFError) as err:
            # A resumed sweep may point at a checkpoint already rotated away (CheckpointConfig's
            # num_to_keep deletes old ones; Tune's state can be a few checkpoints behind when the
            # driver dies). Restarting the trial from scratch gives the same rows.
            print(
                f"trial {tid}: checkpoint {checkpoint.path} unreadable ({type(err).__name__}: "
                f"{err}); restarting the trial from its first epoch",
                file=sys.stderr,
                flush=True,
            )
            trial = trial_cls(cfg)
    if trial.done:
        # Restored from the final checkpoint: evaluate only if that had not happened yet.
        if not writer.has("evals"):
            writer.trial_row(_finish(writer, trial), trial.records)
        return
    scratch = _staging_dir()
    while not trial.done:
        _where(trial.run_epoch())  # the record, as kept in trial.records
        writer.rows("epochs", trial.records)
        status = _finish(writer, trial) if trial.done else trial.status
        writer.trial_row(status, trial.records)
        metrics = _metrics(tid, trial, cfg, status)
        with tempfile.TemporaryDirectory(prefix="ibnn-ckpt-", dir=scratch) as d:
            trial.save(os.path.join(d, CHECKPOINT_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def _kept_metrics(row: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("status", "objective", "epochs_done", "wall_s", "solver_iters")
    return {k: row[k] for k in keys if row.get(k) is not None}


def _where(row: dict[str, Any]) -> dict[str, Any]:
    """Adds where a row was computed (columns ``node``, ``node_id``) unless the trial recorded it:
    the host name and the Ray node id. Returns the same dict."""
    import ray

    row.setdefault("node", socket.gethostname())
    row.setdefault(
        "node_id", ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    )
    return row


def _last(records: list[Mapping[str, Any]], key: str) -> str:
    return str(records[-1].get(key) or "") if records else ""
