"""One palette for every figure: SM and IBNN keep the same colours everywhere."""

from __future__ import annotations

__all__ = [
    "FAMILY_COLORS",
    "FAMILY_LABELS",
    "REFERENCE_COLOR",
    "DASHES",
    "family_color",
    "family_label",
    "rgba",
    "shades",
    "arm_styles",
]

# Blue for the standard model and green for IBNN, as in the paper's Fig. 2.
FAMILY_COLORS: dict[str, str] = {
    "sm": "#2166ac",
    "ibnn": "#1b9e77",
    "ibnn_lite": "#7570b3",
    "ibnn_transfer": "#d95f02",
}
FAMILY_LABELS: dict[str, str] = {
    "sm": "SM",
    "ibnn": "IBNN",
    "ibnn_lite": "IBNN-lite",
    "ibnn_transfer": "IBNN (transferred SM weights)",
}
# The paper's pink dashed line marking SM's best accuracy (Figs. 3 and 7).
REFERENCE_COLOR = "#e7298a"
# Line styles that tell apart several variants of one family (e.g. IBNN at several lam).
DASHES: tuple[str, ...] = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
_FALLBACK = "#666666"


def family_color(family: str) -> str:
    """Hex colour of a model family (grey for a family the palette does not know)."""
    return FAMILY_COLORS.get(family, _FALLBACK)


def family_label(family: str) -> str:
    """Display name of a model family (the raw name for an unknown family)."""
    return FAMILY_LABELS.get(family, family)


def rgba(hex_color: str, alpha: float) -> str:
    """CSS rgba() string of a '#rrggbb' colour with opacity `alpha` in [0, 1]."""
    if len(hex_color) != 7 or not hex_color.startswith("#"):
        raise ValueError(f"colour must be '#rrggbb', but got {hex_color!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], but got {alpha}")
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha:g})"


def shades(family: str, n: int) -> list[str]:
    """`n` shades of a family's colour, from dark to light (variants of one family).

    Args:
        family: model family name.
        n: number of shades wanted (>= 1).

    Returns:
        n '#rrggbb' strings; the first is the family colour itself.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, but got {n}")
    base = family_color(family)
    r, g, b = (int(base[i : i + 2], 16) for i in (1, 3, 5))
    out = []
    for k in range(n):
        t = 0.6 * k / max(n - 1, 1)  # mix up to 60% white
        out.append(
            "#" + "".join(f"{round(c + (255 - c) * t):02x}" for c in (r, g, b)),
        )
    return out


def arm_styles(arms: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Colour and dash of every arm: colour from its family, dash from its rank in the family.

    Args:
        arms: (family, arm) pairs; duplicates are ignored, order is kept.

    Returns:
        arm -> (hex colour, Plotly dash name).
    """
    out: dict[str, tuple[str, str]] = {}
    rank: dict[str, int] = {}
    for family, arm in arms:
        if arm in out:
            continue
        k = rank.get(family, 0)
        rank[family] = k + 1
        out[arm] = (family_color(family), DASHES[k % len(DASHES)])
    return out
