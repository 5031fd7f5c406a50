"""Fig. 2: decision boundaries of the 2-D toy networks (contour prob = 0.5 of each configuration).

A configuration's boundary is the level-0.5 contour of the median over seeds of the predicted
probability of class 1 on the evaluation grid, found by marching squares with linear
interpolation along cell edges.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.stats import BootstrapSpec, summarize
from analysis.tidy import add_arm, present

__all__ = ["contour_segments", "toy_boundaries", "toy_panels", "toy_accuracy"]


def _edge_points(va: np.ndarray, vb: np.ndarray, pa: np.ndarray, pb: np.ndarray, level: float):
    """Crossing flag and interpolated crossing coordinate along edges from a to b."""
    cross = (va >= level) != (vb >= level)
    cross &= ~(np.isnan(va) | np.isnan(vb))
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(cross, (level - va) / (vb - va), 0.0)
    return cross, pa + t * (pb - pa)


def contour_segments(
    x0: np.ndarray, x1: np.ndarray, grid: np.ndarray, level: float = 0.5
) -> np.ndarray:
    """Line segments of the `level` contour of a function sampled on a rectangular grid.

    Args:
        x0: (n0,) increasing coordinates along the grid's columns.
        x1: (n1,) increasing coordinates along the grid's rows.
        grid: (n1, n0) values, grid[i, j] at (x0[j], x1[i]); cells with a NaN corner are skipped.
        level: the contour level.

    Returns:
        (m, 2, 2) segments: segments[s] = [[x0_start, x1_start], [x0_end, x1_end]].
    """
    x0, x1, g = (np.asarray(a, dtype=float) for a in (x0, x1, grid))
    if g.shape != (x1.size, x0.size):
        raise ValueError(f"grid must have shape (len(x1), len(x0)), but got {g.shape}")
    if g.shape[0] < 2 or g.shape[1] < 2:
        return np.zeros((0, 2, 2))
    X0, X1 = np.meshgrid(x0, x1)
    # horizontal edges (i, j)-(i, j+1): crossing x0 varies, x1 fixed
    h_cross, h_x0 = _edge_points(g[:, :-1], g[:, 1:], X0[:, :-1], X0[:, 1:], level)
    h_pts = np.stack([h_x0, X1[:, :-1]], axis=-1)
    # vertical edges (i, j)-(i+1, j): crossing x1 varies, x0 fixed
    v_cross, v_x1 = _edge_points(g[:-1, :], g[1:, :], X1[:-1, :], X1[1:, :], level)
    v_pts = np.stack([X0[:-1, :], v_x1], axis=-1)

    segs = []
    n_cross = (
        h_cross[:-1, :].astype(int)
        + h_cross[1:, :].astype(int)
        + v_cross[:, :-1].astype(int)
        + v_cross[:, 1:].astype(int)
    )
    for i, j in np.argwhere(n_cross >= 2):
        edges = {  # bottom, right, top, left
            "b": (h_cross[i, j], h_pts[i, j]),
            "r": (v_cross[i, j + 1], v_pts[i, j + 1]),
            "t": (h_cross[i + 1, j], h_pts[i + 1, j]),
            "l": (v_cross[i, j], v_pts[i, j]),
        }
        hits = [k for k, (c, _) in edges.items() if c]
        if len(hits) == 2:
            pairs = [tuple(hits)]
        else:  # saddle: decide by the cell centre
            centre = g[i : i + 2, j : j + 2].mean()
            if (centre >= level) == (g[i, j] >= level):
                pairs = [("b", "r"), ("t", "l")]  # corners (i, j+1) and (i+1, j) cut off
            else:
                pairs = [("b", "l"), ("r", "t")]  # corners (i, j) and (i+1, j+1) cut off
        segs.extend([edges[a][1], edges[b][1]] for a, b in pairs)
    return np.array(segs, dtype=float).reshape(-1, 2, 2)


def toy_boundaries(boundaries: pd.DataFrame, level: float = 0.5) -> pd.DataFrame:
    """Contour segments of every configuration's median probability grid.

    Args:
        boundaries: rows family, seed, lam, p, x0, x1, prob (one grid per trial).
        level: probability of the decision boundary.

    Returns:
        Two rows per segment: family, arm, lam, p, n_seeds, segment, end (0 or 1), x0, x1.
    """
    cols = ["family", "arm", "lam", "p", "n_seeds", "segment", "end", "x0", "x1"]
    if boundaries.empty:
        return pd.DataFrame(columns=cols)
    b = add_arm(boundaries.drop(columns=["arm"], errors="ignore"))
    out = []
    for (family, arm), g in b.groupby(["family", "arm"], sort=True):
        med = g.groupby(["x1", "x0"])["prob"].median().unstack("x0").sort_index()
        med = med.sort_index(axis=1)
        segs = contour_segments(
            med.columns.to_numpy(float), med.index.to_numpy(float), med.to_numpy(float), level
        )
        lam, p, n = g["lam"].iloc[0], g["p"].iloc[0], g["seed"].nunique()
        for s, seg in enumerate(segs):
            for end in (0, 1):
                out.append((family, arm, lam, p, n, s, end, seg[end, 0], seg[end, 1]))
    return pd.DataFrame(out, columns=cols)


def _reference(values: pd.Series, other: pd.Series, prefer: float | None) -> float | None:
    """The value of `values` that comes with the most distinct `other` values."""
    if values.empty:
        return None
    counts = other.groupby(values).nunique()
    best = counts[counts == counts.max()].index
    if prefer is not None and prefer in best:
        return prefer
    return float(sorted(best, key=lambda v: (-abs(v), v))[0])


def toy_panels(arms: pd.DataFrame) -> pd.DataFrame:
    """Which arm goes to which panel of Fig. 2.

    Panel "lam": SM and the IBNN arms at the reference p (the p run with the most lam values;
    10 on ties); panel "p": SM and the IBNN arms at the reference lam (the lam run with the
    most p values; the largest |lam| on ties).

    Args:
        arms: rows with family, arm, lam, p (duplicates allowed).

    Returns:
        Rows arm, family, lam, p, panel.
    """
    cols = ["arm", "family", "lam", "p", "panel"]
    a = arms[present(arms, ("arm", "family", "lam", "p"))].drop_duplicates("arm")
    if a.empty:
        return pd.DataFrame(columns=cols)
    sm = a[a["family"] == "sm"]
    ib = a[a["family"] != "sm"]
    p_ref = _reference(ib["p"], ib["lam"], 10.0)
    lam_ref = _reference(ib["lam"], ib["p"], None)
    parts = [
        sm.assign(panel="lam"),
        ib[ib["p"] == p_ref].assign(panel="lam"),
        sm.assign(panel="p"),
        ib[ib["lam"] == lam_ref].assign(panel="p"),
    ]
    return pd.concat(parts, ignore_index=True)[cols]


def toy_accuracy(trials: pd.DataFrame, spec: BootstrapSpec) -> pd.DataFrame:
    """Median test accuracy (at the selected epoch) of each toy configuration, for the legend."""
    return summarize(trials, ["family", "arm"], "test_acc", spec)
