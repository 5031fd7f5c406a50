"""Synthetic sweep results in the documented on-disk layout, with known answers.

Every number below is chosen so that the derived results have an exact expected value
(see EXPECTED). Per-seed noise is an offset per seed, the same in both arms (SEED_OFFSET), whose
values are symmetric about 0 over SM's 10 seeds and over IBNN's 5: the median over seeds is
exactly the noise-free value, and the per-seed IBNN - SM differences are exactly the effect.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.stats import BootstrapSpec
from ibnn.results.schema import SCHEMAS

__all__ = [
    "FAST",
    "REPO",
    "EXPECTED",
    "SM_SEEDS",
    "IBNN_SEEDS",
    "build_storage",
    "build_noisy_expressivity",
    "write_table",
]

# Fewer resamples than the default keeps the tests fast; the coverage tests set their own.
FAST = BootstrapSpec(n_resamples=400, seed=0)
REPO = Path(__file__).resolve().parents[2]
SM_SEEDS = tuple(range(10))
IBNN_SEEDS = tuple(range(5))  # shared with SM seeds 0..4
IBNN_LAM, P = -1.0, 10.0

EXPECTED = {
    # Fig. 3: SM best 0.85 at fraction 1.0; IBNN 0.75 + 0.2 f reaches 0.85 at f = 0.5.
    "sm_best": 0.85,
    "sm_best_fraction": 1.0,
    "fraction": 0.5,
    "fraction_saved": 0.5,
    # Fig. 4: IBNN is 0.05 (surrogate) and 0.02 (white-box) above SM at every eps > 0.
    "pgd_surrogate_gap": 0.05,
    "pgd_whitebox_gap": 0.02,
    # Fig. 5: Pixle accuracy SM 0.30, IBNN 0.45.
    "pixle_gap": 0.15,
    # Fig. 6: IBNN 0.03 above SM at every width C.
    "expressivity_gap": 0.03,
    # Fig. 7: SM's 3-epoch running average peaks first at epoch 27; IBNN reaches it at 12.
    "sm_best_epoch": 27.0,
    "match_epoch": 12.0,
    "epochs_saved": 15.0,
    # Fig. 8: gaps 0.01, 0.02, 0.03 at noise 0, 0.2, 0.4: gain = mean(0.02, 0.03) - 0.01.
    "memorization_gaps": {0.0: 0.01, 0.2: 0.02, 0.4: 0.03},
    "noise_gain": 0.015,
    # Transfer: clean gap -0.004 |lam| (-0.2, -0.4, -2 pp); PGD gap +0.05 |lam|.
    "transfer_lams": (-0.5, -1.0, -5.0),
    # Fig. 2: SM boundary is the line x0 + x1 = 0.5; IBNN (lam, p=10) a circle of radius r.
    "toy_radius": {-0.5: 0.8, -1.0: 1.0, -2.0: 1.2},
}

# The results contract's schemas: the same ones the sweep runner's writer uses.
EPOCH_SCHEMA, EVAL_SCHEMA, BOUNDARY_SCHEMA = (SCHEMAS[t] for t in ("epochs", "evals", "boundaries"))


def write_table(folder: Path, table: str, trial_id: str, rows: list[dict]) -> Path:
    """Write rows atomically (temp file starting with ".", then os.replace) as the writer does."""
    schema = SCHEMAS[table]
    d = folder / table
    d.mkdir(parents=True, exist_ok=True)
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    tmp = d / f".{trial_id}.tmp"
    pq.write_table(pa.table(cols, schema=schema), tmp)
    final = d / f"{trial_id}.parquet"
    os.replace(tmp, final)
    return final


# Offset of each seed (both arms): seeds 0..4 and 5..9 are each symmetric about 0.
SEED_OFFSET = (-0.004, -0.002, 0.0, 0.002, 0.004, -0.003, -0.001, 0.0, 0.001, 0.003)


def _offsets(n: int, spread: float = 0.004) -> np.ndarray:
    return np.array(SEED_OFFSET[:n]) * spread / 0.004


def _config(sweep: str, family: str, seed: int, **kw) -> dict:
    ibnn = family != "sm"
    c = kw.get("C", 3)
    base = {
        "sweep": sweep,
        "family": family,
        "dataset": kw.get("dataset", "fmnist"),
        "seed": seed,
        "L": kw.get("L", 1),
        "C": c,
        "n_params": 100 * c + 10,
        "lam": kw.get("lam", IBNN_LAM) if ibnn else 0.0,
        "p": kw.get("p", P),
        "w_extent": None,
        "lam_trainable": False,
        "train_fraction": kw.get("train_fraction", 1.0),
        "label_noise": kw.get("label_noise", 0.0),
    }
    base["trial_id"] = (
        f"{family}_s{seed}_c{c}_f{base['train_fraction']:g}_n{base['label_noise']:g}"
        f"_l{base['lam']:g}_p{base['p']:g}"
    )
    return base


def _trial_epochs(cfg: dict, acc: float, status: str = "ok") -> list[dict]:
    """Warm-up rows that must be ignored, then 4 train epochs; epoch 3 is the selected one and
    has test_acc == acc; epoch 4 has a higher test_acc but is not selected."""
    rows = []
    for e in (-1, 0):
        rows.append({**cfg, "epoch": e, "phase": "warmup", "val_acc": 0.99, "test_acc": 0.99,
                     "status": "running", "selected": False})  # fmt: skip
    tests = [acc - 0.10, acc - 0.05, acc, acc + 0.02]
    vals = [0.50, 0.60, 0.70, 0.65]
    for e in range(1, 5):
        last = e == 4
        rows.append(
            {
                **cfg,
                "epoch": e,
                "phase": "train",
                "lr": 0.01,
                "train_loss": 1.0 / e,
                "train_acc": acc,
                "val_loss": 1.0 / e,
                "val_acc": vals[e - 1] + acc - 0.8,  # best val at epoch 3 (also best_val_acc)
                "test_loss": 1.0 / e,
                "test_acc": tests[e - 1],
                "solver_iters": 3.0,
                "solver_residual": 1e-6,
                "nonconverged_frac": 0.0,
                "wall_s": 1.0,
                "status": status if last else "running",
                "selected": e <= 3,
            }
        )
    return rows


def _meta(folder: Path, name: str, expected: int, finished: bool, experiment: str = "") -> None:
    meta = {
        "sweep": name,
        "experiment": experiment or name,
        "args": ["--seeds", "10"],
        "started": "2025-01-01T00:00:00",
        "finished": "2025-01-01T01:00:00" if finished else None,
        "expected_trials": expected,
    }
    (folder / "sweep.json").write_text(json.dumps(meta))


def _arms(sweep: str, **kw) -> list[tuple[dict, float]]:
    """(config, offset) for SM seeds and IBNN seeds; offsets symmetric about 0."""
    out = []
    for family, seeds in (("sm", SM_SEEDS), ("ibnn", IBNN_SEEDS)):
        for seed, off in zip(seeds, _offsets(len(seeds), 0.004), strict=True):
            out.append((_config(sweep, family, seed, **kw), float(off)))
    return out


def build_data_fraction(root: Path) -> None:
    folder = root / "data_fraction"
    n = 0
    for f in (0.1, 0.2, 0.4, 0.6, 0.8, 1.0):
        for cfg, off in _arms("data_fraction", train_fraction=f):
            acc = (0.70 + 0.15 * f) if cfg["family"] == "sm" else (0.75 + 0.20 * f)
            write_table(folder, "epochs", cfg["trial_id"], _trial_epochs(cfg, acc + off))
            n += 1
    _meta(folder, "data_fraction", n, True)


def build_expressivity(root: Path, dataset: str = "fmnist", gap: float = 0.03) -> None:
    """Expressivity sweep; another dataset goes to folder expressivity_<dataset>."""
    name = "expressivity" if dataset == "fmnist" else f"expressivity_{dataset}"
    folder = root / name
    n = 0
    for c in (2, 3, 4, 6):
        for cfg, off in _arms(name, C=c, dataset=dataset):
            acc = 0.70 + 0.02 * c + (gap if cfg["family"] == "ibnn" else 0.0)
            write_table(folder, "epochs", cfg["trial_id"], _trial_epochs(cfg, acc + off))
            n += 1
    # a diverged IBNN trial with a new seed: must be left out of every statistic
    bad = _config(name, "ibnn", 99, C=3, dataset=dataset)
    write_table(folder, "epochs", bad["trial_id"], _trial_epochs(bad, 0.10, status="diverged"))
    _meta(folder, name, n + 1, True, experiment="expressivity")


def build_noisy_expressivity(
    root: Path,
    n: int,
    gap: float,
    sd: float = 0.01,
    seed: int = 0,
    failed: tuple[int, ...] = (),
    chance: tuple[int, ...] = (),
) -> Path:
    """Expressivity sweep with random noise and a known true effect, `n` seeds in both arms.

    Seed s has accuracy 0.70 + 0.02 C + gap (IBNN) + u_s + e, with a seed effect u_s ~ N(0, sd)
    shared by both arms and e ~ N(0, sd) per trial: the per-seed IBNN - SM differences are
    symmetric about `gap`, the true effect. IBNN seeds in `failed` diverge (status "diverged",
    accuracy 0.10 before failing); IBNN seeds in `chance` finish ("ok") at 12.5% accuracy, just
    above chance (10%), at every width, as the demo's stalled seed did.
    """
    name = f"expressivity_n{n}"
    folder = root / name
    rng = np.random.default_rng(seed)
    u = rng.normal(0.0, sd, n)
    for c in (2, 3, 4, 6):
        for family in ("sm", "ibnn"):
            for s in range(n):
                cfg = _config(name, family, s, C=c)
                acc = 0.70 + 0.02 * c + (gap if family == "ibnn" else 0.0) + u[s]
                acc += rng.normal(0.0, sd)
                bad = family == "ibnn" and s in failed
                if family == "ibnn" and s in chance:
                    acc = 0.125
                rows = _trial_epochs(cfg, 0.10 if bad else acc, "diverged" if bad else "ok")
                write_table(folder, "epochs", cfg["trial_id"], rows)
    _meta(folder, name, 8 * n, True, experiment="expressivity")
    return root


def build_memorization(root: Path, running: bool = True) -> None:
    """A sweep still running: no finished time, 12 trials expected beyond those written."""
    folder = root / "memorization"
    n = 0
    for noise in (0.0, 0.2, 0.4):
        for cfg, off in _arms("memorization", label_noise=noise):
            best = 0.85 - 0.3 * noise
            if cfg["family"] == "ibnn":
                best += 0.01 + 0.05 * noise
            # best_val_acc of _trial_epochs is acc - 0.1 (val at epoch 3 = 0.70 + acc - 0.8)
            write_table(folder, "epochs", cfg["trial_id"], _trial_epochs(cfg, best + 0.1 + off))
            n += 1
    _meta(folder, "memorization", n + 12, not running)


def build_learning_speed(root: Path, epochs: int = 40) -> None:
    folder = root / "learning_speed"
    n = 0
    for cfg, off in _arms("learning_speed"):
        rows = []
        for e in (-1, 0):
            rows.append({**cfg, "epoch": e, "phase": "warmup", "val_acc": 0.99,
                         "test_acc": 0.99, "status": "running", "selected": False})  # fmt: skip
        for e in range(1, epochs + 1):
            if cfg["family"] == "sm":
                acc = round(min(0.60 + 0.01 * (e - 1), 0.84), 6)
            else:
                acc = round(min(0.60 + 0.025 * (e - 1), 0.90), 6)
            rows.append({**cfg, "epoch": e, "phase": "train", "val_acc": acc + off,
                         "test_acc": acc + off, "status": "ok" if e == epochs else "running",
                         "selected": True})  # fmt: skip
        write_table(folder, "epochs", cfg["trial_id"], rows)
        n += 1
    _meta(folder, "learning_speed", n, True)


def build_robustness(root: Path) -> None:
    folder = root / "robustness"
    n = 0
    for cfg, off in _arms("robustness"):
        ibnn = cfg["family"] == "ibnn"
        write_table(folder, "epochs", cfg["trial_id"], _trial_epochs(cfg, 0.85 + off))
        ev = {k: cfg[k] for k in EVAL_SCHEMA.names if k in cfg}
        rows = [{**ev, "attack": "clean", "strength": 0.0, "acc": 0.85 + off}]
        for eps in (0.01, 0.02, 0.05):
            sm_acc = 0.85 * (1 - 8 * eps) + off
            rows.append({**ev, "attack": "pgd_surrogate", "strength": eps,
                         "acc": sm_acc + (0.05 if ibnn else 0.0)})  # fmt: skip
            if ibnn:
                rows.append({**ev, "attack": "pgd_whitebox", "strength": eps,
                             "acc": sm_acc + 0.02})  # fmt: skip
        rows.append({**ev, "attack": "pixle", "strength": 0.0,
                     "acc": (0.45 if ibnn else 0.30) + off})  # fmt: skip
        rows.append({**ev, "attack": "jacobian_norm", "strength": 0.0, "acc": None,
                     "value": 3.0})  # fmt: skip
        write_table(folder, "evals", cfg["trial_id"], rows)
        n += 1
    (folder / "evals" / "zz_corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    (folder / "evals" / ".inflight.parquet").write_bytes(b"half a file")
    _meta(folder, "robustness", n + 1, True)


def build_transfer(root: Path) -> None:
    folder = root / "transfer"
    n = 0
    for seed, off in zip(SM_SEEDS[:6], np.linspace(-0.004, 0.004, 6), strict=True):
        cfg = _config("transfer", "sm", seed)
        write_table(folder, "epochs", cfg["trial_id"], _trial_epochs(cfg, 0.85 + off))
        ev = {k: cfg[k] for k in EVAL_SCHEMA.names if k in cfg}
        rows = [{**ev, "attack": "clean", "strength": 0.0, "acc": 0.85 + off}]
        rows += [{**ev, "attack": "pgd_surrogate", "strength": e, "acc": 0.5 + off}
                 for e in (0.01, 0.02)]  # fmt: skip
        for lam in EXPECTED["transfer_lams"]:
            tr = {**ev, "family": "ibnn_transfer", "lam": lam}
            rows.append({**tr, "attack": "clean", "strength": 0.0,
                         "acc": 0.85 - 0.004 * abs(lam) + off})  # fmt: skip
            rows += [{**tr, "attack": "pgd_surrogate", "strength": e,
                      "acc": 0.5 + 0.05 * abs(lam) + off} for e in (0.01, 0.02)]  # fmt: skip
        write_table(folder, "evals", cfg["trial_id"], rows)
        n += 1
    _meta(folder, "transfer", n, True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def build_toy2d(root: Path) -> None:
    folder = root / "toy2d"
    g = np.linspace(-2.0, 2.0, 41)
    x0, x1 = (a.ravel() for a in np.meshgrid(g, g))
    configs = [("sm", 0.0, P, None)]
    configs += [("ibnn", lam, P, r) for lam, r in EXPECTED["toy_radius"].items()]
    configs += [("ibnn", -1.0, p, 1.0) for p in (5.0, 20.0)]
    n = 0
    for family, lam, p, radius in configs:
        for seed in range(3):
            cfg = _config("toy2d", family, seed, lam=lam, p=p, dataset="toy2d")
            if radius is None:
                prob = _sigmoid(8.0 * (x0 + x1 - 0.5))
            else:
                prob = _sigmoid(8.0 * (radius - np.hypot(x0, x1)))
            acc = 0.80 if family == "sm" else 0.95
            write_table(folder, "epochs", cfg["trial_id"], _trial_epochs(cfg, acc))
            b = {k: cfg[k] for k in BOUNDARY_SCHEMA.names if k in cfg}
            rows = [{**b, "x0": a, "x1": c, "prob": q}
                    for a, c, q in zip(x0, x1, prob, strict=True)]  # fmt: skip
            write_table(folder, "boundaries", cfg["trial_id"], rows)
            n += 1
    _meta(folder, "toy2d", n, True)


# Cost of each search arm: wall seconds per epoch row (6 rows per trial: 2 warm-up, 4 train).
SEARCH_WALL_PER_EPOCH = {-0.1: 1.0, -0.5: 2.0, -2.0: 5.0}


def build_search(root: Path) -> None:
    folder = root / "search"
    for i, lam in enumerate((-0.1, -0.5, -2.0)):
        for seed in range(2):
            cfg = _config("search", "ibnn", seed, lam=lam)
            rows = _trial_epochs(cfg, 0.80 + 0.01 * i)
            for r in rows:
                r["wall_s"] = SEARCH_WALL_PER_EPOCH[lam]
            write_table(folder, "epochs", cfg["trial_id"], rows)
    # A trial the search's scheduler stopped early: best accuracy so far, yet left out of the
    # search table, and counted as pruned, not failed.
    cfg = _config("search", "ibnn", 0, lam=-5.0)
    write_table(folder, "epochs", cfg["trial_id"], _trial_epochs(cfg, 0.95, status="pruned"))
    # no sweep.json: metadata is optional


def build_storage(root: Path) -> Path:
    """Every kind of sweep, with a running sweep, a failed trial and a corrupt file."""
    root.mkdir(parents=True, exist_ok=True)
    for build in (
        build_data_fraction,
        build_expressivity,
        build_memorization,
        build_learning_speed,
        build_robustness,
        build_transfer,
        build_toy2d,
        build_search,
    ):
        build(root)
    (root / "not_a_sweep").mkdir(exist_ok=True)  # no tables inside: ignored
    return root
