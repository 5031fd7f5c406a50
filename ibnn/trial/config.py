"""The trial configuration: one frozen, typed, validated dataclass.

Every field carries its one-line help in ``metadata["help"]``; the command line of
``python -m ibnn.trial`` is generated from these fields (see :func:`config_fields`), so the two
cannot drift apart. Invalid values are refused in ``__post_init__`` with a message naming the
field, the value and the rule, before any data is loaded or any model is built.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from ibnn.nn.neuron import BACKENDS
from ibnn.trial.data import DATASETS
from ibnn.vocab import (
    EVALS,
    FAMILIES,
    SELECTIONS,
    check_lam,
    check_w_extent,
    lam_bound,
)

__all__ = ["ADDED_FIELDS", "RUNTIME_FIELDS", "TrialConfig", "config_fields"]

# Fields that say where and how fast a trial runs, not what it computes (warm starts change
# only the solver's iterations; results agree to its tolerance): they are not part of a trial's
# identity (its id in a sweep) and may differ between a checkpoint and its resume.
RUNTIME_FIELDS = frozenset(
    {"data_root", "download", "device", "num_workers", "eval_batch_size", "warm_start"}
)
# Fields added after sweeps first recorded trial ids, with the value that means "as before":
# left out of a trial's id while at that value, so that sweeps started earlier keep their ids.
ADDED_FIELDS: dict[str, Any] = {"max_val": None}


def _f(default: Any, help: str) -> Any:
    """A dataclass field with a default and its one-line help (tuples are immutable: no factory)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrialConfig:
    """One seeded trial: data, model, training recipe (DESIGN section 4) and evaluations."""

    # --- data
    dataset: str = _f("fmnist", f"dataset: one of {', '.join(DATASETS)}")
    data_root: str = _f("~/.cache/ibnn/data", "folder with torchvision's dataset files")
    download: bool = _f(False, "let torchvision download missing datasets (needs network)")
    train_fraction: float = _f(
        1.0, "fraction of the training pool used, in (0, 1]; nested per seed"
    )
    label_noise: float = _f(0.0, "fraction of training labels moved to another class, in [0, 1]")
    val_fraction: float = _f(0.1, "fraction of the training set held out for validation, (0, 1)")
    max_train: int | None = _f(
        None, "optional cap on the training pool, before train_fraction (capped protocols)"
    )
    max_test: int | None = _f(None, "optional cap on test samples, seeded choice (smoke runs)")
    max_val: int | None = _f(
        None, "optional cap on validation samples (smoke runs; the training set is unchanged)"
    )
    # --- model
    family: str = _f("sm", f"neuron family: one of {', '.join(FAMILIES)}")
    seed: int = _f(0, "seed of splits, initialisation, shuffling and attacks (>= 0)")
    L: int | None = _f(None, "UCN blocks (None: the paper's value for the dataset; toy2d: 1)")
    C: int | None = _f(None, "UCN channels, or toy2d hidden units (None: the paper's value)")
    lam: float = _f(0.0, "implicit-term weight lam; 0 for sm; lam < 1/(2p) unless opted in")
    p: float = _f(10.0, "slope p of sigma(u) = tanh(p u), > 0")
    w_extent: int | None = _f(None, "None: uniform w over a channel; odd k: k x k window")
    lam_trainable: bool = _f(False, "learn lam (kept below 1/(2p)); ibnn families only")
    allow_unsafe_lam: bool = _f(False, "opt in to lam >= 1/(2p) (no uniqueness guarantee)")
    solver: str = _f("newton", "forward solver of the IBNN layers (ibnn.nn.solvers.SOLVERS)")
    tol: float | None = _f(None, "forward solver tolerance (None: the layer's default by dtype)")
    max_iter: int | None = _f(None, "forward solver iteration cap (None: the solver's default)")
    backend: str = _f("auto", f"cross-term backend: one of {', '.join(BACKENDS)}")
    warm_start: bool = _f(
        True,
        "start each sample's solve from its fixed point of the previous epoch (a float16 "
        "cache per split: 47 MB per 10,000 images for UCN(1,3) on fmnist; ibnn.nn.warm)",
    )
    # --- training recipe
    epochs: int = _f(80, "main training epochs (the paper: 80, lr up for half, down for half)")
    warmup_epochs: int = _f(2, "SM-surrogate warm-up epochs before the main schedule (>= 0)")
    warmup_lr: float = _f(0.001, "learning rate of the warm-up epochs (> 0)")
    batch_size: int = _f(128, "training batch size (>= 1)")
    eval_batch_size: int = _f(
        256, "batch size for validation, test and attacks (>= 1; 256: fastest IBNN solves on CPU)"
    )
    lr_start: float = _f(0.001, "learning rate at the first and last epochs (> 0)")
    lr_peak: float = _f(0.01, "learning rate at mid-training (> 0)")
    momentum: float = _f(0.9, "SGD momentum, in [0, 1)")
    grad_clip: float | None = _f(1.0, "gradient-norm clip (None: no clipping), > 0")
    selection: str = _f("val", "model selection: 'val' (best val acc) or 'paper' (best test loss)")
    max_nonconverged: float = _f(
        0.5, "stop as solver_failed when an epoch's non-converged fraction exceeds this, [0, 1]"
    )
    # --- evaluations (on the selected model)
    evals: tuple[str, ...] = _f(("clean",), f"evaluations to run, from: {', '.join(EVALS)}")
    n_eval: int = _f(1000, "test samples evaluated and attacked (seeded choice, >= 1)")
    pgd_eps: tuple[float, ...] = _f(
        (0.0, 0.01, 0.02, 0.03, 0.05, 0.1), "PGD L-inf radii on the [0, 1] pixel scale (>= 0)"
    )
    pgd_steps: int = _f(10, "PGD iterations (the paper: 10)")
    pixle_restarts: int = _f(10, "Pixle restarts (the paper: 10)")
    pixle_iters: int = _f(5, "Pixle iterations per restart (the paper: 5)")
    pixle_patch: int = _f(3, "Pixle patch side in pixels (the paper: 3)")
    pixle_transposed: bool = _f(
        True,
        "Pixle writes at (col, row) like torchattacks and the paper (see ibnn.trial.attacks.pixle)",
    )
    curvature_h: float = _f(1e-3, "finite-difference step h of the curvature, Eq. 61 (> 0)")
    curvature_draws: int = _f(4, "Rademacher draws per sample for the curvature (>= 1)")
    transfer_lams: tuple[float, ...] = _f((), "sm only: lams for to_ibnn transfer evaluations")
    # --- runtime
    device: str = _f("auto", "torch device: auto (cuda if available), cpu, cuda, cuda:N")
    num_workers: int = _f(
        0, "torch CPU threads while the trial runs (0: unchanged); data stay tensors, no loaders"
    )

    def __post_init__(self) -> None:
        _check_types(self)
        spec = DATASETS.get(self.dataset)
        if spec is None:
            _fail("dataset", self.dataset, f"must be one of {sorted(DATASETS)}")
        if self.L is None:
            object.__setattr__(self, "L", spec.default_L)
        if self.C is None:
            object.__setattr__(self, "C", spec.default_C)
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialConfig:
        """Builds a config from a dict; unknown keys are an error (lists become tuples)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrialConfig keys {unknown}; valid keys: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def same_as_saved(self, saved: dict[str, Any]) -> bool:
        """Whether a config dict saved with a checkpoint is this config, ``RUNTIME_FIELDS``
        aside. Fields added to TrialConfig since the checkpoint was written take their defaults
        (an older checkpoint of the same trial still matches, e.g. one written before
        ``warm_start``); a field the saved dict has and this version lacks, or any other
        differing value, does not match."""
        try:
            old = type(self).from_dict(saved).to_dict()
        except (TypeError, ValueError):
            return False
        new = self.to_dict()
        return all(old[k] == new[k] for k in new if k not in RUNTIME_FIELDS)

    def replace(self, **changes: Any) -> TrialConfig:
        """A validated copy with some fields changed (unknown keys are an error)."""
        return TrialConfig.from_dict({**self.to_dict(), **changes})


def _fail(name: str, value: Any, rule: str) -> typing.NoReturn:
    raise ValueError(f"TrialConfig.{name}={value!r} is invalid: {rule}")


def config_fields() -> list[tuple[dataclasses.Field, Any]]:
    """Each field of TrialConfig with its resolved type (for the generated command line)."""
    hints = typing.get_type_hints(TrialConfig)
    return [(f, hints[f.name]) for f in dataclasses.fields(TrialConfig)]


def _matches(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return any(_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is tuple:
        inner = typing.get_args(tp)[0]
        return isinstance(value, tuple) and all(_matches(v, inner) for v in value)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _check_types(cfg: TrialConfig) -> None:
    for f, tp in config_fields():
        value = getattr(cfg, f.name)
        if not _matches(value, tp):
            _fail(f.name, value, f"must be of type {tp}")
        if isinstance(value, float) and not math.isfinite(value):
            _fail(f.name, value, "must be finite")
        if isinstance(value, tuple) and any(
            isinstance(v, float) and not math.isfinite(v) for v in value
        ):
            _fail(f.name, value, "entries must be finite")


def _positive(cfg: TrialConfig, *names: str, optional: bool = False) -> None:
    for name in names:
        value = getattr(cfg, name)
        if optional and value is None:
            continue
        if value <= 0:
            _fail(name, value, "must be > 0")


def _validate(cfg: TrialConfig) -> None:
    from ibnn.nn.solvers import SOLVERS

    if cfg.family not in FAMILIES:
        _fail("family", cfg.family, f"must be one of {list(FAMILIES)}")
    if cfg.selection not in SELECTIONS:
        _fail("selection", cfg.selection, f"must be one of {list(SELECTIONS)}")
    if cfg.solver not in SOLVERS:
        _fail("solver", cfg.solver, f"must be one of {sorted(SOLVERS)}")
    if cfg.backend not in BACKENDS:
        _fail("backend", cfg.backend, f"must be one of {list(BACKENDS)}")
    for e in cfg.evals:
        if e not in EVALS:
            _fail("evals", cfg.evals, f"each entry must be one of {list(EVALS)}, got {e!r}")
    if cfg.dataset == "toy2d" and "pixle" in cfg.evals:
        _fail("evals", cfg.evals, "pixle rearranges image pixels: not for dataset 'toy2d'")
    if len(set(cfg.evals)) != len(cfg.evals):
        _fail("evals", cfg.evals, "entries must be distinct")
    if cfg.seed < 0:
        _fail("seed", cfg.seed, "must be >= 0")
    if cfg.L < 1:
        _fail("L", cfg.L, "must be >= 1 (number of blocks)")
    if cfg.dataset == "toy2d" and cfg.L != 1:
        _fail("L", cfg.L, "toy2d's network (Fig. 2) has exactly one hidden layer: L must be 1")
    if cfg.C < 1:
        _fail("C", cfg.C, "must be >= 1 (channels or hidden units)")
    _positive(cfg, "p", "warmup_lr", "lr_start", "lr_peak", "batch_size", "eval_batch_size")
    _positive(cfg, "epochs", "n_eval", "pgd_steps", "pixle_restarts", "pixle_iters")
    _positive(cfg, "pixle_patch", "curvature_h", "curvature_draws")
    _positive(cfg, "tol", "max_iter", "grad_clip", "max_train", "max_test", optional=True)
    _positive(cfg, "max_val", optional=True)
    if cfg.warmup_epochs < 0:
        _fail("warmup_epochs", cfg.warmup_epochs, "must be >= 0")
    if cfg.num_workers < 0:
        _fail("num_workers", cfg.num_workers, "must be >= 0")
    if not 0.0 < cfg.train_fraction <= 1.0:
        _fail("train_fraction", cfg.train_fraction, "must lie in (0, 1]")
    if not 0.0 <= cfg.label_noise <= 1.0:
        _fail("label_noise", cfg.label_noise, "must lie in [0, 1]")
    if not 0.0 < cfg.val_fraction < 1.0:
        _fail("val_fraction", cfg.val_fraction, "must lie in (0, 1)")
    if not 0.0 <= cfg.momentum < 1.0:
        _fail("momentum", cfg.momentum, "must lie in [0, 1)")
    if not 0.0 <= cfg.max_nonconverged <= 1.0:
        _fail("max_nonconverged", cfg.max_nonconverged, "must lie in [0, 1]")
    if any(e < 0 for e in cfg.pgd_eps):
        _fail("pgd_eps", cfg.pgd_eps, "every eps must be >= 0")
    if cfg.w_extent is not None:
        _rule("w_extent", cfg.w_extent, check_w_extent)
        if cfg.dataset == "toy2d":
            _fail(
                "w_extent", cfg.w_extent, "toy2d has a linear hidden layer: w_extent must be None"
            )
    if cfg.device != "auto" and not cfg.device.startswith(("cpu", "cuda", "mps")):
        _fail("device", cfg.device, "must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    _validate_lam(cfg)


def _rule(name: str, value: Any, check: Any, *args: Any, **kwargs: Any) -> None:
    """Apply a rule of ``ibnn.vocab`` to a field, failing with the field's name."""
    try:
        check(value, *args, name=f"TrialConfig.{name}", **kwargs)
    except ValueError as err:
        raise ValueError(f"TrialConfig.{name}={value!r} is invalid: {err}") from None


_UNSAFE = "set allow_unsafe_lam=True to opt in"


def _validate_lam(cfg: TrialConfig) -> None:
    if cfg.family == "sm":
        if cfg.lam != 0.0:
            _fail("lam", cfg.lam, "family 'sm' has no implicit term: lam must be 0.0")
        if cfg.lam_trainable:
            _fail("lam_trainable", cfg.lam_trainable, "family 'sm' has no lam to train")
    else:
        if cfg.transfer_lams:
            _fail("transfer_lams", cfg.transfer_lams, "transfer evaluations need family 'sm'")
        if not cfg.allow_unsafe_lam:
            _rule("lam", cfg.lam, check_lam, cfg.p, hint=_UNSAFE)
    if not cfg.allow_unsafe_lam:
        for t in cfg.transfer_lams:
            if t >= lam_bound(cfg.p):
                _rule("transfer_lams", t, check_lam, cfg.p, hint=_UNSAFE)
