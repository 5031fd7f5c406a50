"""Hydra-style overrides from the command line: ``--set lr_peak=0.02``, ``--axis C=3`` or
``--axis label_noise=0,0.4``, ``--space w_extent=none``.

Values are read as Python literals of the config's types: ``none`` -> None, ``true``/``false`` ->
bool, integers, floats, anything else a string. Which keys are allowed is decided by the plan
(``ibnn.sweep.plan``), which validates every resulting trial with the real ``TrialConfig``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["assignment", "parse_value"]


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
