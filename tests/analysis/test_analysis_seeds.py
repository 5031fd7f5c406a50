"""Per-seed points: every seed of every figure drawn beside its median; chance trials marked."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_synthetic import FAST, IBNN_SEEDS, SM_SEEDS, build_noisy_expressivity

from analysis.figures import FIGURES
from analysis.load import load_storage
from analysis.plotting import CHANCE_LEGEND
from analysis.report import compute_report

# Figures whose per-seed frame is the last of their frames.
WITH_SEEDS = [spec for spec in FIGURES if spec.frames[-1].endswith("_seeds")]


def _point_traces(fig) -> list:
    """The per-seed traces (markers only; Fig. 2's median markers are not seeds)."""
    return [
        t
        for t in fig.data
        if t.type == "scatter" and t.mode == "markers" and t.name != "median, interval"
    ]


def test_every_figure_has_a_seed_frame():
    assert {spec.key for spec in WITH_SEEDS} == {spec.key for spec in FIGURES}


def test_seed_frame_is_the_trials_behind_the_medians(report):
    seeds = report.frames["data_fraction_seeds"]
    curves = report.frames["data_fraction_curves"]
    assert len(seeds) == 6 * (len(SM_SEEDS) + len(IBNN_SEEDS))  # one per trial and fraction
    by = ["arm", "train_fraction"]
    med = seeds.groupby(by)["value"].median().rename("seed_median").reset_index()
    both = curves.merge(med, on=by)
    assert len(both) == len(curves)
    np.testing.assert_allclose(both["seed_median"], both["median"])
    assert not seeds["at_chance"].any()


@pytest.mark.parametrize("spec", WITH_SEEDS, ids=lambda s: s.key)
def test_each_figure_draws_each_seed_once(report, spec):
    frames = [report.frames[name] for name in spec.frames]
    fig = spec.draw(*frames)
    seeds = frames[-1]
    drawn = sum(int(np.isfinite(np.asarray(t.y, dtype=float)).sum()) for t in _point_traces(fig))
    assert drawn == int(np.isfinite(seeds["value"].to_numpy(dtype=float)).sum()) > 0


def test_trials_at_chance_are_marked_in_the_figure(tmp_path):
    build_noisy_expressivity(tmp_path, n=5, gap=0.03, chance=(3,))
    report = compute_report(load_storage(str(tmp_path)), FAST)
    spec = next(s for s in FIGURES if s.key == "fig6")
    fig = spec.draw(*(report.frames[name] for name in spec.frames))
    marked = [t for t in _point_traces(fig) if t.name == CHANCE_LEGEND]
    ys = np.concatenate([np.asarray(t.y, dtype=float) for t in marked])
    assert ys.tolist() == pytest.approx([12.5] * 4)  # IBNN seed 3 at each of the 4 widths
    assert sum(bool(t.showlegend) for t in marked) == 1
    r = report.claims[report.claims["claim"] == "expressivity"].iloc[0]
    assert (r["n_chance_sm"], r["n_chance_ibnn"]) == (0, 4)
