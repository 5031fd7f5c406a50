"""Measured coverage of every interval the analysis reports, at n = 3, 5, 10, 20 seeds per arm.

    python benchmarks/ci_coverage.py [--reps 1000] [--boot-reps 400] [--level 0.9]

Each cell is the fraction of simulated experiments whose interval contains the true value
(n/a: the method reports no interval at that n). Noise: normal, skewed (lognormal, sigma 1)
and heavy-tailed (Student t, 2 df). True values:

- median of one arm: the population median;
- paired / partly paired effect: IBNN_s = SM_s + delta + (e2 - e1) with a seed effect shared by
  both arms; the Hodges-Lehmann estimate targets the pseudo-median of the per-seed differences,
  which is delta (e2 - e1 is symmetric); partly paired: SM has 2n seeds, IBNN n (all shared);
- unpaired effect: IBNN = SM + delta in distribution; the target is the shift delta;
- curve statistics (bootstrap): the statistic of the two population median curves (the noise
  is the same in both arms and at every point, so it shifts both median curves equally).

The old percentile bootstrap of a median is shown for comparison (it is no longer used).

Tied, accuracy-like data ("grid" rows): accuracies 0.8 + seed effect (SD 1 pp, shared when
paired) + noise (SD 0.3 pp), rounded to multiples of 1/500 (a 500-image evaluation set), so
seeds tie often; IBNN is shifted by DELTA_GRID = 2/500 (on the grid, so the rounded IBNN values
are exactly the rounded SM values shifted: the target is still DELTA_GRID). The verdict rows
draw the same data with no effect (shift 0) and report how often the superiority rule wrongly
says "supported", and with a small real effect (shift +1/500, 0.2 pp) how often it wrongly says
"not supported" (stated for each: <= 5%, one side of a 90% interval). With ties the interval can
end exactly at 0; with no effect "not supported" (whole interval <= 0) is then a correct answer,
not an error, so it is not counted.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from analysis.claims import TOO_FEW, verdict
from analysis.derived import fraction_statistics, speed_statistics
from analysis.effects import Contrast, mean_over_points, rank_effect
from analysis.stats import ArmPair, BootstrapSpec, bootstrap_pair, median_ci, percentile_interval

NS = (3, 5, 10, 20)
MEAN = Contrast(mean_over_points)
DELTA = 0.5
GRID = 500  # accuracies are multiples of 1/GRID
DELTA_GRID = 2 / GRID


def noise(name: str, rng: np.random.Generator, size) -> np.ndarray:
    """Noise with median 0 (lognormal: exp(Z) - 1)."""
    if name == "normal":
        return rng.normal(size=size)
    if name == "lognormal":
        return np.exp(rng.normal(size=size)) - 1.0
    return rng.standard_t(2, size=size)


DISTS = ("normal", "lognormal", "t2")


def _pair(a: np.ndarray, b: np.ndarray, shared: int, xs: np.ndarray | None = None) -> ArmPair:
    xs = np.zeros(a.shape[1]) if xs is None else xs
    return ArmPair(xs, a, b, shared, np.arange(a.shape[0]), np.arange(b.shape[0]))


def median_coverage(dist: str, n: int, reps: int, level: float, old: bool) -> float:
    rng = np.random.default_rng(1)
    hits, shown = 0, 0
    for r in range(reps):
        x = noise(dist, rng, n)
        if old:
            idx = np.random.default_rng(r).integers(0, n, size=(1000, n))
            lo, hi = percentile_interval(np.median(x[idx], axis=1), level)
        else:
            est = median_ci(x, BootstrapSpec(level=level))
            lo, hi = est.lo, est.hi
        if np.isnan(lo):
            continue
        shown += 1
        hits += lo <= 0.0 <= hi
    return hits / shown if shown else float("nan")


def effect_coverage(dist: str, design: str, n: int, reps: int, level: float) -> float:
    rng = np.random.default_rng(2)
    hits, shown = 0, 0
    for _ in range(reps):
        n_sm = 2 * n if design == "partly paired" else n
        u = rng.normal(size=n_sm)  # seed effect, shared by both arms when paired
        sm = u + noise(dist, rng, n_sm)
        if design == "unpaired":
            ib, shared = DELTA + rng.normal(size=n) + noise(dist, rng, n), 0
        else:
            ib, shared = u[:n] + DELTA + noise(dist, rng, n), n
        est = rank_effect(_pair(sm[:, None], ib[:, None], shared), MEAN, level)
        if np.isnan(est.lo):
            continue
        shown += 1
        hits += est.lo <= DELTA <= est.hi
    return hits / shown if shown else float("nan")


def _grid_arms(rng: np.random.Generator, n: int, paired: bool, shift: float):
    """(SM, IBNN) accuracies on the 1/GRID grid; IBNN shifted by `shift` (a grid multiple)."""
    u = 0.8 + 0.01 * rng.normal(size=n)
    sm = np.round((u + 0.003 * rng.normal(size=n)) * GRID) / GRID
    base = u if paired else 0.8 + 0.01 * rng.normal(size=n)
    ib = np.round((base + 0.003 * rng.normal(size=n)) * GRID) / GRID + shift
    return sm, ib


def grid_effect(design: str, n: int, reps: int, level: float, shift: float) -> list[float]:
    """[coverage of `shift`, P(verdict "supported"), P(verdict "not supported")]."""
    rng = np.random.default_rng(4)
    hits = shown = supported = rejected = 0
    paired = design == "paired"
    for _ in range(reps):
        sm, ib = _grid_arms(rng, n, paired, shift)
        est = rank_effect(_pair(sm[:, None], ib[:, None], n if paired else 0), MEAN, level)
        v = verdict(est.lo, est.hi, n, n)
        if v == TOO_FEW:
            continue
        shown += 1
        hits += est.lo - 1e-12 <= shift <= est.hi + 1e-12
        supported += v == "supported"
        rejected += v == "not supported"
    nan = float("nan")
    return [hits / shown, supported / shown, rejected / shown] if shown else [nan, nan, nan]


def _fraction_curves(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return 0.70 + 0.15 * xs, 0.75 + 0.20 * xs


def _speed_curves(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Rise, then a slow decline: SM peaks near epoch 27, IBNN near epoch 14.
    sm = 0.6 + 0.24 * (1 - np.exp(-xs / 8.0)) - 0.001 * xs
    ib = 0.6 + 0.26 * (1 - np.exp(-xs / 4.0)) - 0.001 * xs
    return sm, ib


CURVES = {
    "fraction_saved": (np.array([0.1, 0.2, 0.4, 0.6, 0.8, 1.0]), _fraction_curves),
    "epochs_saved": (np.arange(1.0, 41.0), _speed_curves),
}


def curve_coverage(stat: str, dist: str, n: int, reps: int, level: float) -> float:
    xs, make = CURVES[stat]
    fn = {**fraction_statistics(), **speed_statistics(3)}[stat]
    sm0, ib0 = make(xs)
    truth = float(fn(xs, sm0[None, :], ib0[None, :])[0])
    rng = np.random.default_rng(3)
    hits = 0
    spec = BootstrapSpec(level=level, n_resamples=1000, bootstrap_min_seeds=2)
    for r in range(reps):
        u = 0.01 * rng.normal(size=(n, 1))
        sm = sm0 + u + 0.01 * noise(dist, rng, (n, xs.size))
        ib = ib0 + u + 0.01 * noise(dist, rng, (n, xs.size))
        pair = _pair(sm, ib, n, xs)
        est = bootstrap_pair(pair, lambda a, b, p=pair: fn(p.xs, a, b), spec)
        hits += est.lo <= truth <= est.hi
        spec = BootstrapSpec(level=level, n_resamples=1000, seed=r + 1, bootstrap_min_seeds=2)
    return hits / reps


def _row(label: str, cells: list[float]) -> str:
    shown = [f"{c:.3f}" if c == c else "n/a" for c in cells]
    return f"| {label} | " + " | ".join(shown) + " |"


def _exact_rows(args: argparse.Namespace) -> None:
    for dist in DISTS:
        cells = [median_coverage(dist, n, args.reps, args.level, old=False) for n in NS]
        print(_row(f"median of one arm, order statistic, {dist}", cells))
    for dist in DISTS:
        cells = [median_coverage(dist, n, args.boot_reps, args.level, old=True) for n in NS]
        print(_row(f"median of one arm, old percentile bootstrap, {dist}", cells))
    for design in ("paired", "partly paired", "unpaired"):
        for dist in DISTS:
            cells = [effect_coverage(dist, design, n, args.reps, args.level) for n in NS]
            print(_row(f"effect, {design}, Hodges-Lehmann, {dist}", cells))


def _grid_rows(args: argparse.Namespace) -> None:
    for design in ("paired", "unpaired"):
        cells = [grid_effect(design, n, args.reps, args.level, DELTA_GRID) for n in NS]
        print(_row(f"effect, {design}, Hodges-Lehmann, tied 1/{GRID} grid", [c[0] for c in cells]))
        null = [grid_effect(design, n, args.reps, args.level, 0.0) for n in NS]
        print(_row(f"no effect, {design}, tied grid: P(supported)", [c[1] for c in null]))
        small = [grid_effect(design, n, args.reps, args.level, 1 / GRID) for n in NS]
        print(_row(f"+0.2 pp, {design}, tied grid: P(not supported)", [c[2] for c in small]))


def _curve_rows(args: argparse.Namespace) -> None:
    for stat in CURVES:
        for dist in DISTS:
            cells = [curve_coverage(stat, dist, n, args.boot_reps, args.level) for n in NS]
            print(_row(f"{stat}, paired percentile bootstrap, {dist}", cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=1000, help="experiments per cell (exact methods)")
    ap.add_argument("--boot-reps", type=int, default=400, help="experiments per bootstrap cell")
    ap.add_argument("--level", type=float, default=0.90, help="nominal level")
    ap.add_argument("--only-grid", action="store_true", help="only the tied-data rows")
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(f"nominal {args.level:g}; cells: coverage (n/a: no interval reported at that n)\n")
    print("| statistic, method, noise | " + " | ".join(f"n = {n}" for n in NS) + " |")
    print("|---|" + "---|" * len(NS))
    if not args.only_grid:
        _exact_rows(args)
    _grid_rows(args)
    if not args.only_grid:
        _curve_rows(args)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
