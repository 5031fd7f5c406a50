"""One seeded trial: data, model, the paper's training recipe, model selection and evaluations.

    from ibnn.trial import TrialConfig, Trial, run_trial
    result = run_trial(TrialConfig(dataset="fmnist", family="ibnn", lam=0.04, epochs=8))

Recipe (DESIGN section 4): ``warmup_epochs`` SM-surrogate epochs (records with phase "warmup"
and epoch numbers ``1 - warmup_epochs .. 0``) whose weights start the model (SM trials get the
same epochs), then ``epochs`` main epochs of SGD with momentum, the linear up/down learning
rate and gradient clipping. Model selection by validation accuracy (``selection="val"``) or,
labelled as such, by test loss (``selection="paper"``, the authors' choice).

A solver failure or a divergence (too many non-converged samples, a non-finite loss, or a
numerical exception in a step: ``ibnn.trial.failures.NUMERICAL_FAILURES``) ends the trial
cleanly with ``status`` "solver_failed" or "diverged". Any other exception (out of memory, a
CUDA or device error, a lost node) propagates, so that a scheduler retries the trial.
Run ``python -m ibnn.trial --help`` for the command line.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ibnn.nn.memory import reuse_freed_memory
from ibnn.nn.models import to_ibnn, toy_net, ucn
from ibnn.nn.neuron import ImplicitBias
from ibnn.nn.warm import WarmStarts
from ibnn.results.schema import OK, SOLVER_FAILED
from ibnn.trial.config import TrialConfig
from ibnn.trial.data import load_raw, make_splits
from ibnn.trial.evaluation import evaluate_model, neuron_kwargs
from ibnn.trial.failures import NUMERICAL_FAILURES
from ibnn.trial.train import PassResult, evaluate_split, lr_at, train_epoch

__all__ = [
    "EpochStart",
    "Trial",
    "TrialConfig",
    "TrialResult",
    "conclude",
    "format_record",
    "run_trial",
]

_SHUFFLE_STREAM = 21  # seed stream of the epoch permutations


@dataclass
class TrialResult:
    """What ``run_trial`` returns."""

    epochs: list[dict[str, Any]]  # one record per epoch (warm-up first)
    evals: list[dict[str, Any]]  # eval rows of the selected model ([] unless status is "ok")
    status: str  # "ok", "solver_failed" or "diverged"
    boundary: list[dict[str, Any]] = field(default_factory=list)  # toy2d decision boundary
    error: str = ""  # why evaluation failed ("" unless status became "solver_failed" there)


@dataclass(frozen=True)
class EpochStart:
    """What ``Trial.begin_epoch`` decided for the epoch it started."""

    epoch: int  # epoch number (warm-up epochs are <= 0)
    warm: bool  # an SM warm-up epoch
    lr: float  # learning rate of the whole epoch
    started: float  # time.perf_counter() at the start


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """What a row records as its device: the GPU's name (e.g. "NVIDIA H200") or "cpu"."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def _seed_of(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


class Trial:
    """A seeded trial, run epoch by epoch (``run_epoch``) so that a runner can checkpoint it.

    Building it loads the data (onto ``cfg.device``) and the SM surrogate's initial weights
    (from ``cfg.seed`` only). ``cfg.num_workers > 0`` sets torch's CPU threads for the process
    (``run_trial`` restores them afterwards).

    Args:
        cfg: the validated configuration.
    """

    def __init__(self, cfg: TrialConfig) -> None:
        self.cfg = cfg
        self.device = _device(cfg.device)
        reuse_freed_memory()  # large CPU temporaries come back without page faults
        if cfg.num_workers > 0:
            torch.set_num_threads(cfg.num_workers)
        raw = load_raw(cfg.dataset, cfg.data_root, download=cfg.download)
        self.spec = raw.spec
        splits = make_splits(
            raw,
            cfg.seed,
            cfg.train_fraction,
            cfg.label_noise,
            cfg.val_fraction,
            cfg.max_train,
            cfg.max_test,
            cfg.max_val,
        )
        self.splits = splits.to(self.device)
        self.surrogate = self._build_sm()  # warm-up model; the main model starts from it
        self.n_params = sum(p.numel() for p in self.surrogate.parameters())
        self.model: nn.Module = self.surrogate
        self.optimizer = self._optimizer(self.surrogate, cfg.warmup_lr)
        self.shuffle = torch.Generator().manual_seed(_seed_of(cfg.seed, _SHUFFLE_STREAM))
        self.records: list[dict[str, Any]] = []
        self.status = "running"
        self.error = ""  # message of the exception that ended the trial, if any
        self.epochs_done = 0  # warm-up and main epochs run so far
        self.in_main = False  # the main model has been built from the surrogate
        self.best: dict[str, Any] | None = None  # epoch, score, state of the selected epoch
        # the last epoch's training, validation and test passes (None where not run): their
        # seconds and solver statistics, for benchmarks
        self.passes: tuple[PassResult | None, ...] = ()
        # per-sample warm starts of the main model's solves, by split (cfg.warm_start); not
        # checkpointed: a resumed trial's first epoch starts cold
        self.warm: dict[str, WarmStarts] = {}
        if cfg.warmup_epochs == 0:
            self._start_main()

    # -- building -------------------------------------------------------------------------------
    def _build_sm(self) -> nn.Module:
        cfg, spec = self.cfg, self.spec
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)  # initial weights depend on the seed only
            if cfg.dataset == "toy2d":
                model = toy_net("sm", hidden=cfg.C)
            else:
                model = ucn("sm", cfg.L, cfg.C, spec.in_channels, spec.num_classes, spec.image_size)
        return model.to(self.device)

    def _optimizer(self, model: nn.Module, lr: float) -> torch.optim.SGD:
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=self.cfg.momentum)

    def _main_from(self, sm: nn.Module) -> nn.Module:
        if self.cfg.family == "sm":
            return sm
        return to_ibnn(sm, **neuron_kwargs(self.cfg)).to(self.device)

    def _start_main(self) -> None:
        self.model = self._main_from(self.surrogate)
        self.optimizer = self._optimizer(self.model, self.cfg.lr_start)
        self.in_main = True
        if self.cfg.warm_start and self._has_ibnn():
            s = self.splits
            self.warm = {k: WarmStarts(len(v)) for k, v in (
                ("train", s.y_train), ("val", s.y_val), ("test", s.y_test))}  # fmt: skip

    # -- running --------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """True once every epoch ran or the trial failed."""
        return self.status != "running"

    def run_epoch(self) -> dict[str, Any]:
        """Runs the next epoch (warm-up or main) and returns its record.

        Raises:
            Exception: anything but a numerical failure (out of memory, a device error): the
                trial is then in an undefined state; continue from a checkpoint (``load``).
        """
        return self.run_begun(self.begin_epoch())

    def run_begun(self, epoch: EpochStart) -> dict[str, Any]:
        """Trains and evaluates an epoch started by ``begin_epoch`` (see ``run_epoch``)."""
        cfg, s = self.cfg, self.splits
        tr = None
        try:
            tr = train_epoch(
                self.model,
                s.x_train,
                s.y_train,
                self.optimizer,
                lr=epoch.lr,
                batch_size=cfg.batch_size,
                generator=self.shuffle,
                grad_clip=cfg.grad_clip,
                warm=self.warm.get("train"),
            )
            va = te = None
            if math.isfinite(tr.loss):
                bs, warm = cfg.eval_batch_size, self.warm.get
                va = evaluate_split(self.model, s.x_val, s.y_val, bs, warm("val"))
                te = evaluate_split(self.model, s.x_test, s.y_test, bs, warm("test"))
        except NUMERICAL_FAILURES as err:  # a numerical error: end the trial cleanly
            self.passes = (tr, None, None)
            return self.finish_epoch(epoch, tr, error=err)  # keeps a finished training pass
        self.passes = (tr, va, te)
        return self.finish_epoch(epoch, tr, va, te)

    def begin_epoch(self) -> EpochStart:
        """Starts the next epoch: builds the main model when the warm-up is over, and says
        which epoch it is and its learning rate (``finish_epoch`` ends it)."""
        if self.done:
            raise RuntimeError(f"the trial is finished (status {self.status!r})")
        cfg = self.cfg
        warm = self.epochs_done < cfg.warmup_epochs
        if not warm and not self.in_main:
            self._start_main()
        epoch = self.epochs_done - cfg.warmup_epochs + 1
        lr = cfg.warmup_lr if warm else lr_at(epoch, cfg.epochs, cfg.lr_start, cfg.lr_peak)
        return EpochStart(epoch, warm, lr, time.perf_counter())

    def finish_epoch(
        self,
        epoch: EpochStart,
        tr: PassResult | None = None,
        va: PassResult | None = None,
        te: PassResult | None = None,
        error: BaseException | None = None,
    ) -> dict[str, Any]:
        """Ends an epoch from its training pass and evaluations (None when not run, e.g. after
        a non-finite loss) or the numerical error that stopped it; judges, selects, records.

        Returns:
            The epoch's record (also appended to ``records``).
        """
        nan = math.nan
        rec = self._base_row() | {
            "epoch": epoch.epoch,
            "phase": "warmup" if epoch.warm else "train",
            "lr": epoch.lr,
        }
        if tr is not None:
            rec |= {"train_loss": tr.loss, "train_acc": tr.acc} | tr.solver
        if error is not None:
            self.error = f"{type(error).__name__}: {error}"
            self.status = "solver_failed" if self._has_ibnn() else "diverged"
        else:
            rec |= {
                "val_loss": va.loss if va else nan,
                "val_acc": va.acc if va else nan,
                "test_loss": te.loss if te else nan,
                "test_acc": te.acc if te else nan,
                "eval_nonconverged_frac": te.solver["nonconverged_frac"] if te else nan,
            }
            self._judge(rec)
        self.epochs_done += 1
        if not epoch.warm and self.status == "running":
            self._select(epoch.epoch, rec)
        if (
            self.status == "running"
            and self.epochs_done == self.cfg.warmup_epochs + self.cfg.epochs
        ):
            self.status = "ok"
        rec = _fill(rec) | {
            "wall_s": time.perf_counter() - epoch.started,
            "status": self.status,
            "error": self.error,
            "lam_learned": self._lam_learned(),
            "selected": (
                self.best is not None and self.best["epoch"] == epoch.epoch and not epoch.warm
            ),
            "selected_epoch": self.best["epoch"] if self.best else -1,
        }
        self.records.append(rec)
        return rec

    def _judge(self, rec: dict[str, Any]) -> None:
        """Sets the status from an epoch's numbers: NaN loss or too many unsolved samples."""
        res, nc = rec["solver_residual"], rec["nonconverged_frac"]
        solved = not math.isnan(rec["solver_iters"])  # an implicit solve ran (not SM, not lite)
        solver_bad = solved and (nc > self.cfg.max_nonconverged or not math.isfinite(res))
        finite = all(math.isfinite(rec[k]) for k in ("train_loss", "val_loss", "test_loss"))
        if solver_bad:
            self.status = "solver_failed"
            self.error = f"non-converged fraction {nc:.3g}, max residual {res:.3g}"
        elif not finite:
            self.status = "diverged"
            self.error = "non-finite loss"

    def _select(self, epoch: int, rec: dict[str, Any]) -> None:
        if self.cfg.selection == "val":
            score = rec["val_acc"]  # higher is better; ties keep the earlier epoch
        else:
            score = -rec["test_loss"]  # the authors' choice: lowest test loss
        if math.isfinite(score) and (self.best is None or score > self.best["score"]):
            state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.best = {"epoch": epoch, "score": score, "state": state}

    def _has_ibnn(self) -> bool:
        return any(isinstance(m, ImplicitBias) for m in self.model.modules())

    def _lam_learned(self) -> float:
        lams = [float(m.lam.detach()) for m in self.model.modules() if isinstance(m, ImplicitBias)]
        return float(np.mean(lams)) if lams else math.nan

    def _base_row(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "family": cfg.family,
            "dataset": cfg.dataset,
            "seed": cfg.seed,
            "L": cfg.L,
            "C": cfg.C,
            "n_params": self.n_params,
            "lam": float(cfg.lam),
            "p": float(cfg.p),
            "w_extent": cfg.w_extent,
            "lam_trainable": cfg.lam_trainable,
            "train_fraction": float(cfg.train_fraction),
            "label_noise": float(cfg.label_noise),
            "selection": cfg.selection,
            "n_train": len(self.splits.y_train),
            "node": socket.gethostname(),  # where this epoch (or evaluation) ran
            "device": device_name(self.device),
        }

    # -- results --------------------------------------------------------------------------------
    def selected_model(self) -> nn.Module:
        """The model at the selected epoch (the current model if none was selected yet)."""
        if self.best is None:
            return self.model
        model = self._main_from(self._build_sm())
        model.load_state_dict(self.best["state"])
        return model

    def evaluate(self) -> list[dict[str, Any]]:
        """Eval rows (``cfg.evals``, transfer) of the selected model on ``n_eval`` test samples."""
        base = self._base_row() | {"epoch": self.best["epoch"] if self.best else -1}
        s = self.splits
        return evaluate_model(self.selected_model(), self.cfg, s.x_test, s.y_test, base)

    @torch.no_grad()
    def boundary(self, n: int = 101) -> list[dict[str, Any]]:
        """toy2d only: class-1 probability of the selected model on an n x n grid of [-1, 1]^2."""
        if self.cfg.dataset != "toy2d":
            raise ValueError(f"boundary() needs dataset 'toy2d', but got {self.cfg.dataset!r}")
        model = self.selected_model().eval()
        axis = torch.linspace(-1.0, 1.0, n, device=self.device)
        g0, g1 = torch.meshgrid(axis, axis, indexing="ij")
        pts = torch.stack([g0.flatten(), g1.flatten()], 1)
        prob = torch.cat(
            [model(pts[i : i + 4096]).softmax(1)[:, 1] for i in range(0, len(pts), 4096)]
        )
        cfg = self.cfg
        head = {"family": cfg.family, "seed": cfg.seed, "lam": float(cfg.lam), "p": float(cfg.p)}
        return [
            head | {"x0": float(a), "x1": float(b), "prob": float(c)}
            for a, b, c in zip(pts[:, 0].tolist(), pts[:, 1].tolist(), prob.tolist(), strict=True)
        ]

    # -- checkpoints ----------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Writes the full state (atomically) so that ``load`` can continue identically."""
        state = {
            "cfg": self.cfg.to_dict(),
            "epochs_done": self.epochs_done,
            "in_main": self.in_main,
            "status": self.status,
            "error": self.error,
            "records": self.records,
            "best": self.best,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "shuffle": self.shuffle.get_state(),
        }
        tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def load(self, path: str) -> None:
        """Restores a state written by ``save`` for the same config."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        if not self.cfg.same_as_saved(state["cfg"]):
            raise ValueError(f"checkpoint {path!r} was written for another TrialConfig")
        if state["in_main"] and not self.in_main:
            self._start_main()
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.shuffle.set_state(state["shuffle"])
        for key in ("epochs_done", "status", "error", "records", "best"):
            setattr(self, key, state[key])


def _fill(rec: dict[str, Any]) -> dict[str, Any]:
    """Every metric key present (NaN when the epoch ended before computing it)."""
    keys = (
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "test_loss",
        "test_acc",
        "solver_iters",
        "solver_iters_max",
        "solver_backward_iters",
        "solver_residual",
        "nonconverged_frac",
        "eval_nonconverged_frac",
    )
    return {k: math.nan for k in keys} | rec


def format_record(rec: dict[str, Any]) -> str:
    """One console line per epoch: epoch, lr, losses, accuracies, solver stats, seconds."""
    solver = ""
    if not math.isnan(rec["solver_iters"]):
        solver = (
            f" | solver it {rec['solver_iters']:.1f} res {rec['solver_residual']:.1e} "
            f"nc {rec['nonconverged_frac']:.3f}"
        )
    return (
        f"[{rec['dataset']} {rec['family']} lam={rec['lam']:g} seed={rec['seed']}] "
        f"{rec['phase']} epoch {rec['epoch']:>3} lr {rec['lr']:.4f} "
        f"| loss tr {rec['train_loss']:.4f} "
        f"val {rec['val_loss']:.4f} test {rec['test_loss']:.4f} | acc tr {rec['train_acc']:.4f} "
        f"val {rec['val_acc']:.4f} test {rec['test_acc']:.4f}{solver} | {rec['wall_s']:.1f}s"
        + ("" if rec["status"] == "running" else f" | {rec['status']}")
    )


def run_trial(cfg: TrialConfig, progress: bool = True) -> TrialResult:
    """Trains and evaluates one trial; never raises for a failed solve (see ``status``), but
    does for out-of-memory and device errors (``ibnn.trial.failures``).

    Args:
        cfg: the configuration.
        progress: print one line per epoch to stderr.
    """
    threads = torch.get_num_threads()
    try:
        return _run(cfg, progress)
    finally:
        torch.set_num_threads(threads)  # num_workers applies to this trial only


def _run(cfg: TrialConfig, progress: bool) -> TrialResult:
    trial = Trial(cfg)
    while not trial.done:
        rec = trial.run_epoch()
        if progress:
            print(format_record(rec), file=sys.stderr, flush=True)
    return conclude(trial)


def conclude(trial: Trial, boundary: bool | None = None) -> TrialResult:
    """The result of a finished trial: its records, and the evaluations of its selected model
    when it ended "ok"; a solve failing under attack makes it "solver_failed" (no evaluations,
    the reason in ``error``) instead of crashing. Other exceptions (out of memory, a device
    error) propagate. The one rule for ending a trial: ``run_trial`` and the sweep's trials
    (``ibnn.sweep.trials.trainable``) both end theirs here.

    Args:
        trial: a trial whose ``done`` is True.
        boundary: also draw its decision boundary (None: for the toy2d dataset).
    """
    if boundary is None:
        boundary = trial.cfg.dataset == "toy2d"
    evals: list[dict[str, Any]] = []
    drawn: list[dict[str, Any]] = []
    status, error = trial.status, ""
    if status == OK:
        try:
            evals = trial.evaluate()
            drawn = trial.boundary() if boundary else []
        except NUMERICAL_FAILURES as err:  # a solve failing under attack: report, do not crash
            status, evals, drawn = SOLVER_FAILED, [], []
            error = trial.error = f"evaluation: {type(err).__name__}: {err}"
            print(f"trial evaluation failed: {error}", file=sys.stderr, flush=True)
    return TrialResult(trial.records, evals, status, drawn, error)
