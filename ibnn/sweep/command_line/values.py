"""The values of the sweep's flags, each parsed and checked by an argparse type: numbers with
their bounds, ``--w-extent``, ``--families``, and Hydra-style overrides (``--set lr_peak=0.02``,
``--axis C=3`` or ``--axis label_noise=0,0.4``, ``--space w_extent=none``).

Values are read as Python literals of the config's types: ``none`` -> None, ``true``/``false`` ->
bool, integers, floats, anything else a string. Which keys are allowed is decided by the plan
(``ibnn.sweep.plan``), which validates every resulting trial with the real ``TrialConfig``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ibnn.vocab import FAMILIES, check_w_extent

__all__ = [
    "assignment",
    "families",
    "finite_float",
    "int_at_least",
    "nonneg_int",
    "parse_value",
    "positive_int",
    "w_extent",
]


def parse_value(text: str) -> Any:
    """``"none"`` -> None, ``"true"``/``"false"`` -> bool, ``"3"`` -> 3, ``"0.4"`` -> 0.4, else
    the text itself."""
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text.strip()


def assignment(flag: str, many: bool = False) -> Callable[[str], tuple[str, Any]]:
    """An argparse type for ``KEY=VALUE`` (``many``: ``KEY=V1,V2,...``, a tuple of values)."""

    def parse(text: str) -> tuple[str, Any]:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier() or not value.strip():
            form = "KEY=V1,V2,..." if many else "KEY=VALUE"
            raise argparse.ArgumentTypeError(f"{flag} must be {form}, got {text!r}")
        if many:
            values = tuple(parse_value(v) for v in value.split(","))
            if len(set(map(repr, values))) != len(values):
                raise argparse.ArgumentTypeError(f"{flag} {key} lists a value twice: {value!r}")
            return key, values
        return key, parse_value(value)

    return parse


def int_at_least(flag: str, low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{flag} must be >= {low}, got {value}")
        return value

    return parse


def positive_int(flag: str) -> Callable[[str], int]:
    """An argparse type: an integer >= 1."""
    return int_at_least(flag, 1)


def nonneg_int(flag: str) -> Callable[[str], int]:
    """An argparse type: an integer >= 0."""
    return int_at_least(flag, 0)


def finite_float(
    flag: str, low: float | None = None, strict: bool = False
) -> Callable[[str], float]:
    """An argparse type: a finite number, ``>= low`` (``strict``: ``> low``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{flag} must be finite, got {text!r}")
        if low is not None and (value <= low if strict else value < low):
            rule = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"{flag} must be {rule} {low:g}, got {value:g}")
        return value

    return parse


def w_extent(text: str) -> int | None:
    """``--w-extent``: 'none' (global w) or an odd window side."""
    if text.lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        value = text
    try:
        check_w_extent(value, name="--w-extent")
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err} ('none' for None)") from None
    return value


def families(text: str) -> tuple[str, ...]:
    """``--families``: a comma-separated subset of the neuron families."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in FAMILIES]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"--families must be a comma-separated subset of {', '.join(FAMILIES)}, got {text!r}"
        )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"--families lists a family twice: {text!r}")
    return names
