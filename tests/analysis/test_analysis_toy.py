"""Fig. 2: marching-squares contours and the toy panels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from analysis_synthetic import EXPECTED

from analysis.toy import contour_segments, toy_panels


def test_contour_of_a_plane_is_exact():
    g = np.linspace(-1, 1, 21)
    X0, X1 = np.meshgrid(g, g)
    segs = contour_segments(g, g, X0 + 2 * X1, level=0.3)
    assert len(segs) > 10
    pts = segs.reshape(-1, 2)
    assert np.abs(pts[:, 0] + 2 * pts[:, 1] - 0.3).max() < 1e-12  # linear: interpolation exact


def test_contour_of_a_circle():
    g = np.linspace(-2, 2, 81)
    X0, X1 = np.meshgrid(g, g)
    segs = contour_segments(g, g, np.hypot(X0, X1), level=1.0)
    r = np.hypot(*segs.reshape(-1, 2).T)
    assert np.abs(r - 1.0).max() < 2e-3  # within the chord error of a 0.05 grid
    angles = np.arctan2(segs[:, :, 1], segs[:, :, 0]).ravel()
    assert np.ptp(angles) > 6.0  # the whole circle, not an arc


def test_saddle_cell_gives_two_segments_by_centre_value():
    grid = np.array([[1.0, 0.0], [0.0, 1.0]])  # centre 0.5 >= level: high corners connected
    segs = contour_segments(np.array([0.0, 1.0]), np.array([0.0, 1.0]), grid, level=0.5)
    assert segs.shape == (2, 2, 2)
    mids = segs.mean(axis=1)
    # the two segments cut off the low corners (1, 0) and (0, 1)
    assert sorted(map(tuple, np.round(mids, 3))) == [(0.25, 0.75), (0.75, 0.25)]


def test_contour_checks_shape_and_skips_nan():
    with pytest.raises(ValueError, match="grid must have shape"):
        contour_segments(np.arange(3.0), np.arange(2.0), np.zeros((3, 2)))
    grid = np.array([[0.0, 1.0], [np.nan, 1.0]])
    assert contour_segments(np.arange(2.0), np.arange(2.0), grid).shape == (0, 2, 2)


def test_toy_boundaries_match_known_shapes(report):
    seg = report.frames["toy_boundaries"]
    sm = seg[seg["family"] == "sm"]
    assert np.abs(sm["x0"] + sm["x1"] - 0.5).max() < 0.02  # the line x0 + x1 = 0.5
    for lam, radius in EXPECTED["toy_radius"].items():
        s = seg[(seg["family"] == "ibnn") & (seg["lam"] == lam) & (seg["p"] == 10.0)]
        assert s["n_seeds"].iloc[0] == 3
        r = np.hypot(s["x0"], s["x1"])
        assert np.abs(r - radius).max() < 0.01, lam


def test_toy_panels_and_accuracy(report):
    panels = report.frames["toy_panels"]
    lam_panel = panels[panels["panel"] == "lam"]
    p_panel = panels[panels["panel"] == "p"]
    assert "SM" in set(lam_panel["arm"]) and "SM" in set(p_panel["arm"])
    assert set(lam_panel.loc[lam_panel["family"] == "ibnn", "lam"]) == {-0.5, -1.0, -2.0}
    assert set(p_panel.loc[p_panel["family"] == "ibnn", "p"]) == {5.0, 10.0, 20.0}
    acc = report.frames["toy_accuracy"].set_index("arm")["median"]
    assert acc["SM"] == pytest.approx(0.80) and acc["IBNN (λ=-1, p=10)"] == pytest.approx(0.95)


def test_toy_panels_empty():
    assert toy_panels(pd.DataFrame(columns=["arm", "family", "lam", "p"])).empty
