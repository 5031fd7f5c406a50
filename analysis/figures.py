"""One Plotly figure per paper figure, drawn from the tidy frames of `report.compute_report`.

Nothing is computed here beyond unit conversion (fractions to %): the numbers come from
derived.py and toy.py, which the tests check.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.palette import REFERENCE_COLOR, arm_styles, family_color, shades
from analysis.plotting import (
    add_band,
    add_curves,
    add_points,
    add_seed_points,
    facet_keys,
    facets,
    new_figure,
    ordered_arms,
)

__all__ = [
    "FigureSpec",
    "FIGURES",
    "fig_toy",
    "fig_data_fraction",
    "fig_pgd",
    "fig_pixle",
    "fig_expressivity",
    "fig_learning",
    "fig_memorization",
    "fig_transfer",
]

ACC = "Test accuracy at the selected epoch (%)"


def _same_condition(frame: pd.DataFrame, panel: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows of `frame` in the condition of a panel (equal on `keys`, NaN equal to NaN)."""
    out = frame
    for k in keys:
        if k not in out.columns:
            continue
        v = panel[k].iloc[0]
        out = out[out[k].isna()] if pd.isna(v) else out[out[k] == v]
    return out


def _panel_seeds(seeds: pd.DataFrame | None, panel: pd.DataFrame, keys: list[str]):
    """The per-seed rows of one panel (None when there are none)."""
    if seeds is None or seeds.empty:
        return None
    return _same_condition(seeds, panel, keys)


def _stat(rows: pd.DataFrame, name: str) -> pd.DataFrame:
    return rows[rows["statistic"] == name] if not rows.empty else rows


def _axes(fig: go.Figure, x: str, y: str, **xkw) -> None:
    fig.update_xaxes(title_text=x, **xkw)
    fig.update_yaxes(title_text=y)


def _reference_lines(
    fig: go.Figure, match: pd.DataFrame, x_best: str, x_ibnn: str, col: int, x_scale: float
) -> None:
    """The paper's pink dashed SM-best line, where SM gets there, and where each IBNN arm does."""
    best = _stat(match, "sm_best")
    if best.empty or not math.isfinite(best["value"].iloc[0]):
        return
    line = {"color": REFERENCE_COLOR, "dash": "dash", "width": 1.5}
    fig.add_hline(y=100 * best["value"].iloc[0], line=line, row=1, col=col)
    where = _stat(match, x_best)
    if not where.empty and math.isfinite(where["value"].iloc[0]):
        fig.add_vline(x=x_scale * where["value"].iloc[0], line=line, row=1, col=col)
    for _, r in _stat(match, x_ibnn).iterrows():
        if math.isfinite(r["value"]):
            fig.add_vline(
                x=x_scale * r["value"],
                line={"color": family_color(r["family"]), "dash": "dot", "width": 1.5},
                row=1,
                col=col,
            )


def _toy_seed_panel(
    fig: go.Figure, accuracy: pd.DataFrame, seeds: pd.DataFrame, col: int, shown: set[str]
) -> None:
    """Median test accuracy of each toy arm with its interval, and each seed beside it."""
    arms = [a for _, a in ordered_arms(accuracy)]
    for i, arm in enumerate(arms):
        r = accuracy[accuracy["arm"] == arm].iloc[0]
        color = family_color(r["family"])
        med, lo, hi = (100 * float(r[k]) for k in ("median", "lo", "hi"))
        fig.add_trace(
            go.Scatter(
                x=[i],
                y=[med],
                mode="markers",
                name="median, interval",
                showlegend="median, interval" not in shown,
                marker={"color": color, "size": 9, "symbol": "diamond"},
                error_y={
                    "type": "data",
                    "array": [hi - med if math.isfinite(hi) else 0.0],
                    "arrayminus": [med - lo if math.isfinite(lo) else 0.0],
                },
                hovertemplate=f"{arm}: median %{{y:.1f}}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        shown.add("median, interval")
        s = seeds[seeds["arm"] == arm]
        add_points(fig, np.full(len(s), i + 0.25), s, color, (1, col), shown, arm)
    fig.update_xaxes(tickvals=list(range(len(arms))), ticktext=arms, row=1, col=col)
    fig.update_yaxes(title_text="Test accuracy (%)", row=1, col=col)


def fig_toy(
    segments: pd.DataFrame,
    panels: pd.DataFrame,
    accuracy: pd.DataFrame,
    seeds: pd.DataFrame | None = None,
) -> go.Figure:
    """Fig. 2: decision boundaries (prob = 0.5) varying lam (left) and p (middle); right: each
    arm's test accuracy per seed beside its median (when per-seed rows are given)."""
    acc = dict(zip(accuracy["arm"], accuracy["median"], strict=True)) if not accuracy.empty else {}
    with_seeds = seeds is not None and not seeds.empty and not accuracy.empty
    titles = ["IBNN with varying λ", "IBNN with varying p"]
    fig = new_figure([*titles, "Test accuracy per seed"] if with_seeds else titles)
    shown: set[str] = set()
    for c, name in enumerate(("lam", "p"), start=1):
        _toy_boundaries(fig, segments, panels, acc, name, c, shown)
    for c in (1, 2):
        fig.update_xaxes(title_text="Input x₀ (data units)", row=1, col=c)
    fig.update_yaxes(title_text="Input x₁ (data units)", row=1, col=1)
    fig.update_yaxes(scaleanchor="x", row=1, col=1)  # equal scales: circles look round
    fig.update_yaxes(scaleanchor="x2", row=1, col=2)
    if with_seeds:
        _toy_seed_panel(fig, accuracy, seeds, 3, shown)
    return fig


def _toy_boundaries(
    fig: go.Figure,
    segments: pd.DataFrame,
    panels: pd.DataFrame,
    acc: dict[str, float],
    name: str,
    c: int,
    shown: set[str],
) -> None:
    """The level-0.5 contours of one panel ("lam" or "p") of Fig. 2."""
    arms = panels[panels["panel"] == name]
    ib = arms[arms["family"] != "sm"].sort_values("lam" if name == "lam" else "p")
    colors = dict(zip(ib["arm"], shades("ibnn", max(len(ib), 1)), strict=False))
    for _, a in pd.concat([arms[arms["family"] == "sm"], ib]).iterrows():
        seg = segments[segments["arm"] == a["arm"]].sort_values(["segment", "end"])
        xs, ys = [], []
        for _, s in seg.groupby("segment", sort=True):
            xs += [*s["x0"], None]
            ys += [*s["x1"], None]
        label = a["arm"] + (f": accuracy {100 * acc[a['arm']]:.1f}%" if a["arm"] in acc else "")
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=label,
                legendgroup=a["arm"],
                showlegend=label not in shown,
                line={"color": colors.get(a["arm"], family_color(a["family"])), "width": 2},
            ),
            row=1,
            col=c,
        )
        shown.add(label)


def fig_data_fraction(
    curves: pd.DataFrame, match: pd.DataFrame, seeds: pd.DataFrame | None = None
) -> go.Figure:
    """Fig. 3: test accuracy vs fraction of the training set used."""
    keys = facet_keys(curves, ("train_fraction",))
    panels = facets(curves, keys)
    fig = new_figure([t for t, _ in panels])
    styles, shown = arm_styles(ordered_arms(curves)), set()
    for c, (_, g) in enumerate(panels, start=1):
        add_curves(fig, g, "train_fraction", 1, c, shown, x_scale=100.0, styles=styles)
        s = _panel_seeds(seeds, g, keys)
        add_seed_points(fig, s, "train_fraction", (1, c), shown, styles, x_scale=100.0)
        _reference_lines(
            fig, _same_condition(match, g, keys), "sm_best_fraction", "fraction", c, 100
        )
    _axes(fig, "Training data used (% of the training set)", ACC)
    return fig


def fig_pgd(curves: pd.DataFrame, seeds: pd.DataFrame | None = None) -> go.Figure:
    """Fig. 4: accuracy vs PGD eps (0 = clean), one panel per condition and attack."""
    keys = facet_keys(curves, ("strength",))
    panels = facets(curves, keys)
    fig = new_figure([t for t, _ in panels])
    styles, shown = arm_styles(ordered_arms(curves)), set()
    for c, (_, g) in enumerate(panels, start=1):
        add_curves(fig, g, "strength", 1, c, shown, styles=styles)
        add_seed_points(fig, _panel_seeds(seeds, g, keys), "strength", (1, c), shown, styles)
    _axes(fig, "PGD ε (L∞ bound, input scale 0–1)", "Accuracy under attack (%)")
    return fig


def fig_pixle(bars: pd.DataFrame, seeds: pd.DataFrame | None = None) -> go.Figure:
    """Fig. 5: clean accuracy (translucent) and accuracy under Pixle (solid), with CIs."""
    keys = facet_keys(bars, ("attack",))
    panels = facets(bars, keys)
    fig = new_figure([t for t, _ in panels])
    styles, shown = arm_styles(ordered_arms(bars)), set()
    for c, (_, g) in enumerate(panels, start=1):
        for _, arm in ordered_arms(g):
            color = styles[arm][0]
            for attack, opacity in (("clean", 0.35), ("pixle", 1.0)):
                r = g[(g["arm"] == arm) & (g["attack"] == attack)]
                if r.empty:
                    continue
                med, lo, hi = (100 * r[k].iloc[0] for k in ("median", "lo", "hi"))
                name = f"{arm}, {'clean' if attack == 'clean' else 'under Pixle'}"
                fig.add_trace(
                    go.Bar(
                        x=[arm],
                        y=[med],
                        name=name,
                        legendgroup=name,
                        showlegend=name not in shown,
                        marker={"color": color, "opacity": opacity},
                        error_y={
                            "type": "data",
                            "array": [hi - med if math.isfinite(hi) else 0.0],
                            "arrayminus": [med - lo if math.isfinite(lo) else 0.0],
                            "color": "black",
                        },
                    ),
                    row=1,
                    col=c,
                )
                shown.add(name)
                s = _panel_seeds(seeds, r, keys)
                if s is not None:
                    s = s[(s["arm"] == arm) & (s["attack"] == attack)]
                    add_points(fig, [arm] * len(s), s, color, (1, c), shown, arm)
    fig.update_layout(barmode="overlay")
    _axes(fig, "Model", "Accuracy (%)")
    return fig


def fig_expressivity(curves: pd.DataFrame, seeds: pd.DataFrame | None = None) -> go.Figure:
    """Fig. 6: test accuracy vs number of trainable parameters (width C varies)."""
    keys = facet_keys(curves, ("C",))
    panels = facets(curves, keys)
    fig = new_figure([t for t, _ in panels])
    styles, shown = arm_styles(ordered_arms(curves)), set()
    for c, (_, g) in enumerate(panels, start=1):
        add_curves(fig, g, "n_params", 1, c, shown, styles=styles)
        add_seed_points(fig, _panel_seeds(seeds, g, keys), "n_params", (1, c), shown, styles)
    _axes(fig, "Trainable parameters (count)", ACC)
    return fig


def fig_learning(
    curves: pd.DataFrame, match: pd.DataFrame, seeds: pd.DataFrame | None = None
) -> go.Figure:
    """Fig. 7: 3-epoch running average of median test accuracy vs epoch."""
    keys = facet_keys(curves, ("epoch",))
    panels = facets(curves, keys)
    fig = new_figure([t for t, _ in panels])
    styles, shown = arm_styles(ordered_arms(curves)), set()
    for c, (_, g) in enumerate(panels, start=1):
        add_curves(fig, g, "epoch", 1, c, shown, styles=styles)
        add_seed_points(fig, _panel_seeds(seeds, g, keys), "epoch", (1, c), shown, styles)
        _reference_lines(fig, _same_condition(match, g, keys), "sm_best_epoch", "match_epoch", c, 1)
    _axes(fig, "Epoch (after the 2 warm-up epochs)", "Test accuracy, 3-epoch running average (%)")
    return fig


def fig_memorization(
    curves: pd.DataFrame, gaps: pd.DataFrame, seeds: pd.DataFrame | None = None
) -> go.Figure:
    """Fig. 8: best validation accuracy vs wrong labels (top) and the IBNN - SM gap (bottom)."""
    keys = facet_keys(curves, ("label_noise",))
    panels = facets(curves, keys)
    fig = new_figure([t for t, _ in panels], rows=2)
    styles, shown = arm_styles(ordered_arms(curves)), set()
    for c, (_, g) in enumerate(panels, start=1):
        add_curves(fig, g, "label_noise", 1, c, shown, x_scale=100.0, styles=styles)
        s = _panel_seeds(seeds, g, keys)
        add_seed_points(fig, s, "label_noise", (1, c), shown, styles, x_scale=100.0)
        gap = _same_condition(gaps, g, keys)
        for arm, a in gap.groupby("arm", sort=True):
            a = a.sort_values("label_noise")
            color, dash = styles.get(arm, (family_color(a["family"].iloc[0]), "solid"))
            x = 100 * a["label_noise"].to_numpy(dtype=float)
            add_band(fig, x, 100 * a["lo"], 100 * a["hi"], color, 2, c)
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=100 * a["value"].to_numpy(dtype=float),
                    mode="lines+markers",
                    name=f"{arm} − SM",
                    legendgroup=arm,
                    showlegend=f"{arm} − SM" not in shown,
                    line={"color": color, "dash": dash},
                ),
                row=2,
                col=c,
            )
            shown.add(f"{arm} − SM")
        fig.add_hline(y=0, line={"color": "grey", "width": 1}, row=2, col=c)
    fig.update_xaxes(title_text="Wrong training labels (% of the training set)")
    fig.update_yaxes(title_text="Best validation accuracy (%)", row=1, col=1)
    fig.update_yaxes(title_text="IBNN − SM (percentage points)", row=2, col=1)
    return fig


def fig_transfer(curves: pd.DataFrame, seeds: pd.DataFrame | None = None) -> go.Figure:
    """Supplementary: SM weights run as IBNN at several lam (lam = 0 is SM itself)."""
    keys = facet_keys(curves, ("attack",))
    panels = facets(curves, keys)
    fig = new_figure([t for t, _ in panels])
    shown: set[str] = set()
    color = family_color("ibnn_transfer")
    for c, (_, g) in enumerate(panels, start=1):
        lines = g[["attack", "strength"]].drop_duplicates().sort_values(["attack", "strength"])
        for k, (_, ln) in enumerate(lines.iterrows()):
            r = g[(g["attack"] == ln["attack"]) & (g["strength"] == ln["strength"])]
            r = r.sort_values("lam")
            name = "clean" if ln["attack"] == "clean" else f"PGD ε={ln['strength']:g} (surrogate)"
            dash = ("solid", "dash", "dot", "dashdot")[k % 4]
            add_band(fig, r["lam"], 100 * r["lo"], 100 * r["hi"], color, 1, c)
            fig.add_trace(
                go.Scatter(
                    x=r["lam"],
                    y=100 * r["median"],
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=name not in shown,
                    line={"color": color, "dash": dash},
                    marker={"color": np.where(r["family"] == "sm", family_color("sm"), color)},
                ),
                row=1,
                col=c,
            )
            shown.add(name)
            s = _panel_seeds(seeds, r, [*keys, "attack", "strength"])
            if s is not None and not s.empty:
                shift = 0.012 * (float(g["lam"].max() - g["lam"].min()) or 1.0) * (k + 1)
                add_points(
                    fig, s["lam"].to_numpy(dtype=float) + shift, s, color, (1, c), shown, name
                )
    _axes(fig, "λ of the IBNN layers (0 = the trained SM itself)", "Accuracy (%)")
    return fig


@dataclass(frozen=True)
class FigureSpec:
    """A dashboard figure: which paper figure, which frames, how to draw it."""

    key: str  # id of the figure's section in the page
    title: str  # section title
    kind: str  # sweep kind it needs (load.KINDS)
    frames: tuple[str, ...]  # report frames given to `draw`, in order (first must be non-empty)
    draw: Callable[..., go.Figure]  # builds the figure from those frames
    caption: str  # what is shown, as in the paper's caption


# Said once in every caption that draws per-seed points.
_POINTS = (
    " Points: one per seed, beside its arm's median; ✕: a trial that ended at chance "
    "accuracy (it stays in the median)."
)

FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("fig2", "Fig. 2 · Decision boundaries of the 2-D toy network", "toy2d",
               ("toy_boundaries", "toy_panels", "toy_accuracy", "toy_seeds"), fig_toy,
               "Level-0.5 contour of the median (over seeds) predicted probability of class 1, "
               "SM and IBNN with one hidden layer of 3 neurons; legend: median test accuracy. "
               "Right: each arm's median test accuracy with its interval (diamond, bar) and its "
               "seeds beside it; ✕: a trial that ended at chance accuracy."),
    FigureSpec("fig3", "Fig. 3 · Less training data required", "data_fraction",
               ("data_fraction_curves", "data_fraction_match", "data_fraction_seeds"),
               fig_data_fraction,
               "Median test accuracy vs fraction of the training set; shaded: CI. Pink dashed: "
               "SM's best median and where SM reaches it; dotted: where IBNN first reaches it."
               + _POINTS),
    FigureSpec("fig4", "Fig. 4 · Robustness to PGD", "robustness",
               ("pgd_curves", "pgd_seeds"), fig_pgd,
               "Median accuracy vs PGD strength ε (0 = clean accuracy); 10-step PGD generated on "
               "the SM surrogate (λ = 0, the paper's protocol) and, where run, white-box through "
               "the IBNN's implicit gradient. Shaded: CI." + _POINTS),
    FigureSpec("fig5", "Fig. 5 · Robustness to Pixle", "robustness",
               ("pixle_bars", "pixle_seeds"), fig_pixle,
               "Translucent bar: median clean accuracy; solid bar: median accuracy under Pixle "
               "(black-box). Black lines: CI." + _POINTS),
    FigureSpec("fig6", "Fig. 6 · Expressivity", "expressivity",
               ("expressivity_curves", "expressivity_seeds"), fig_expressivity,
               "Median test accuracy vs number of trainable parameters (the width C varies); "
               "SM and IBNN have the same parameter count at each C. Shaded: CI." + _POINTS),
    FigureSpec("fig7", "Fig. 7 · Faster learning", "learning_speed",
               ("learning_curves", "learning_speed_match", "learning_seeds"), fig_learning,
               "3-epoch running average of the median test accuracy; shaded: percentile-"
               "bootstrap band of that statistic (>= 5 seeds). Pink dashed: SM's best and its "
               "epoch; dotted: first epoch where IBNN matches it. Points: each seed's own "
               "3-epoch running average; ✕: a trial that ended at chance accuracy."),
    FigureSpec("fig8", "Fig. 8 · Less memorization", "memorization",
               ("memorization_curves", "memorization_gaps", "memorization_seeds"),
               fig_memorization,
               "Top: median best validation accuracy vs fraction of wrong training labels; "
               "bottom: IBNN − SM effect per noise level (Hodges-Lehmann, exact Wilcoxon / "
               "Mann-Whitney CI shaded)." + _POINTS),
    FigureSpec("transfer", "Supplementary · SM weights transferred to IBNN", "transfer",
               ("transfer_curves", "transfer_seeds"), fig_transfer,
               "Median accuracy of trained SM networks run as IBNN at several λ without "
               "retraining (λ = 0: the SM itself, blue markers), clean and under PGD. "
               "Shaded: CI." + _POINTS),
)  # fmt: skip
