"""Drawing helpers shared by the figures: facets, median lines with shaded CI bands."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.claims import condition_label
from analysis.palette import arm_styles, rgba
from analysis.tidy import CONDITION_KEYS, present

__all__ = [
    "facet_keys",
    "facets",
    "new_figure",
    "add_band",
    "add_curves",
    "ordered_arms",
    "add_points",
    "add_seed_points",
    "SEED_LEGEND",
    "CHANCE_LEGEND",
]

BAND_ALPHA = 0.2
POINT_ALPHA = 0.6
# Legend entries of the per-seed points (each shown once per figure).
SEED_LEGEND = "one point per seed (trial)"
CHANCE_LEGEND = "trial that ended at chance accuracy"
# Each arm's seed points stand this fraction of the panel's x range right of its median.
SEED_SHIFT = 0.012


def facet_keys(df: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """Columns whose values split a curve frame into panels (condition keys, attack)."""
    return [k for k in present(df, (*CONDITION_KEYS, "attack")) if k not in exclude]


def facets(df: pd.DataFrame, keys: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """(panel title, rows) per distinct value of `keys`, sorted."""
    if not keys:
        return [("", df)]
    out = []
    for key, g in df.groupby(keys, dropna=False, sort=True):
        row = pd.Series(dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)))
        title = condition_label(row)
        if "attack" in row:
            title = f"{title}, {row['attack']}" if title else str(row["attack"])
        out.append((title, g))
    return out


def new_figure(titles: list[str], rows: int = 1, row_titles: list[str] | None = None) -> go.Figure:
    """A figure with one column per panel title (and `rows` rows)."""
    cols = max(len(titles), 1)
    subplot_titles = list(titles) * rows if rows > 1 else list(titles)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=subplot_titles,
        horizontal_spacing=0.08 if cols > 1 else 0.02,
        vertical_spacing=0.14,
        row_titles=row_titles,
    )
    fig.update_layout(
        template="plotly_white",
        height=380 * rows + 60,
        margin={"l": 70, "r": 30, "t": 60, "b": 60},
        legend={"orientation": "h", "yanchor": "top", "y": -0.18},
    )
    return fig


def add_band(
    fig: go.Figure, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, color: str, row: int, col: int
) -> None:
    """Shade the region between lo and hi (points where either is NaN or infinite dropped)."""
    x, lo, hi = (np.asarray(a, dtype=float) for a in (x, lo, hi))
    ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(x)
    if ok.sum() < 2:
        return
    xs, los, his = x[ok], lo[ok], hi[ok]
    fig.add_trace(
        go.Scatter(
            x=np.concatenate([xs, xs[::-1]]),
            y=np.concatenate([his, los[::-1]]),
            fill="toself",
            fillcolor=rgba(color, BAND_ALPHA),
            line={"width": 0},
            hoverinfo="skip",
            showlegend=False,
            mode="lines",
        ),
        row=row,
        col=col,
    )


def ordered_arms(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(family, arm) pairs with SM first, then by family and arm name."""
    pairs = df[["family", "arm"]].drop_duplicates()
    order = {"sm": 0, "ibnn": 1, "ibnn_lite": 2, "ibnn_transfer": 3}
    pairs = pairs.assign(_o=pairs["family"].map(order).fillna(9))
    pairs = pairs.sort_values(["_o", "family", "arm"])
    return list(zip(pairs["family"], pairs["arm"], strict=True))


def add_curves(
    fig: go.Figure,
    df: pd.DataFrame,
    x: str,
    row: int,
    col: int,
    shown: set[str],
    x_scale: float = 1.0,
    y_scale: float = 100.0,
    styles: dict[str, tuple[str, str]] | None = None,
) -> None:
    """One median line with its shaded CI band per arm of `df` (columns x, median, lo, hi, n).

    Args:
        fig: the figure to draw into.
        df: one panel's curve rows.
        x: the x column.
        row: subplot row.
        col: subplot column.
        shown: arms already in the legend (updated; each arm appears there once).
        x_scale: factor applied to x (100 for fractions shown in %).
        y_scale: factor applied to the medians and bounds (100 for accuracies in %).
        styles: arm -> (colour, dash); default from `palette.arm_styles`.
    """
    styles = styles or arm_styles(ordered_arms(df))
    for _, arm in ordered_arms(df):
        g = df[df["arm"] == arm].sort_values(x)
        color, dash = styles[arm]
        xs = g[x].to_numpy(dtype=float) * x_scale
        add_band(fig, xs, g["lo"] * y_scale, g["hi"] * y_scale, color, row, col)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=g["median"].to_numpy(dtype=float) * y_scale,
                mode="lines+markers",
                name=arm,
                legendgroup=arm,
                showlegend=arm not in shown,
                line={"color": color, "dash": dash, "width": 2},
                marker={"size": 5},
                customdata=np.stack([g["n"].to_numpy()], axis=-1),
                hovertemplate=f"{arm}<br>x=%{{x:.4g}}<br>median %{{y:.2f}}"
                "<br>n=%{customdata[0]}<extra></extra>",
            ),
            row=row,
            col=col,
        )
        shown.add(arm)


def add_points(
    fig: go.Figure,
    x: np.ndarray | list,
    seeds: pd.DataFrame,
    color: str,
    where: tuple[int, int],
    shown: set[str],
    group: str,
    y_scale: float = 100.0,
) -> None:
    """Per-seed points (`seeds`: columns seed, value, at_chance) at `x`, chance trials as ✕.

    Args:
        fig: the figure to draw into.
        x: (n,) x of each row of `seeds`.
        seeds: the rows to draw.
        color: the arm's colour.
        where: (row, col) of the subplot.
        shown: legend entries already shown (updated).
        group: legend group (the arm), so that the points hide with their arm.
        y_scale: factor applied to the values (100 for accuracies in %).
    """
    x = np.asarray(x, dtype=object)
    for chance in (False, True):
        sel = (seeds["at_chance"] == chance).to_numpy()
        if not sel.any():
            continue
        name = CHANCE_LEGEND if chance else SEED_LEGEND
        h = seeds[sel]
        fig.add_trace(
            go.Scatter(
                x=list(x[sel]),
                y=h["value"].to_numpy(dtype=float) * y_scale,
                mode="markers",
                name=name,
                legendgroup=name if chance else group,
                showlegend=name not in shown,
                marker={
                    "size": 9 if chance else 5,
                    "symbol": "x-thin-open" if chance else "circle",
                    "color": "#b2182b" if chance else rgba(color, POINT_ALPHA),
                    "line": {"width": 2 if chance else 0, "color": "#b2182b"},
                },
                customdata=h["seed"].to_numpy(),
                hovertemplate=f"{group}<br>seed %{{customdata}}: %{{y:.2f}}"
                + (" (at chance)" if chance else "")
                + "<extra></extra>",
            ),
            row=where[0],
            col=where[1],
        )
        shown.add(name)


def add_seed_points(
    fig: go.Figure,
    seeds: pd.DataFrame | None,
    x: str,
    where: tuple[int, int],
    shown: set[str],
    styles: dict[str, tuple[str, str]],
    x_scale: float = 1.0,
) -> None:
    """Each arm's seeds as points just right of its median line (SEED_SHIFT of the x range per
    arm, so that the arms' points do not cover one another)."""
    if seeds is None or seeds.empty:
        return
    xs = seeds[x].to_numpy(dtype=float) * x_scale
    span = float(np.nanmax(xs) - np.nanmin(xs)) or 1.0
    for i, (_, arm) in enumerate(ordered_arms(seeds)):
        sel = (seeds["arm"] == arm).to_numpy()
        shift = SEED_SHIFT * span * (i + 1)
        add_points(fig, xs[sel] + shift, seeds[sel], styles[arm][0], where, shown, arm)
