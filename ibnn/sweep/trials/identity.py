"""Who a trial is: the settings every trial of a sweep shares, its TrialConfig from a Tune config,
its deterministic ``trial_id``, and the names Tune gives it.

A Tune config is a grid trial (the sweep's constants, its own values under ``"variant"``), a
search trial (the constants and the values the space suggested, plus its Optuna number under
``SEARCH_NUMBER``) or a pack (its members' variants under ``ibnn.sweep.trials.packing.PACK``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ibnn.sweep.trials.packing import PACK, member_configs
from ibnn.trial.config import ADDED_FIELDS, RUNTIME_FIELDS

__all__ = [
    "RUNTIME_KEYS",
    "SEARCH_NUMBER",
    "TrialNamer",
    "TrialSettings",
    "flatten_config",
    "load_trial_api",
    "resolve",
    "search_number",
    "trial_id",
]

# Config fields that change where or how fast a trial runs, not its numbers: left out of trial_id.
RUNTIME_KEYS = RUNTIME_FIELDS
# Config key a search adds to each trial: its Optuna trial number (recorded, not a config field).
SEARCH_NUMBER = "search_number"


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of a sweep shares (fixed for the sweep's lifetime)."""

    storage: str  # results root, path or URI
    sweep: str  # sweep folder name
    experiment: str  # experiment name (the spec's name)
    trial_module: str = "ibnn.trial"  # module providing Trial and TrialConfig
    drop_keys: tuple[str, ...] = ()  # search-only keys of the config, not TrialConfig fields
    boundaries: bool = False  # also write trial.boundary() (toy2d)
    data_stage: str = ""  # where the driver staged the dataset (fetched per node); "": nowhere
    # The driver's Ray, torch and Python versions, checked once per node before its first trial
    # (``preflight.check_node``); None on one machine (its own Ray instance: nothing to check).
    driver_versions: dict[str, Any] | None = None


def load_trial_api(module: str) -> tuple[type, type]:
    """The ``(Trial, TrialConfig)`` classes of a trial module (default ``ibnn.trial``)."""
    mod = importlib.import_module(module)
    missing = [n for n in ("Trial", "TrialConfig") if not hasattr(mod, n)]
    if missing:
        raise ValueError(f"trial module {module!r} lacks {missing}; it must define both")
    return mod.Trial, mod.TrialConfig


def flatten_config(config: Mapping[str, Any], drop_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """The TrialConfig fields of a Tune config.

    The grid puts each trial's own values under ``config["variant"]``; they are merged over the
    sweep's constants. ``drop_keys`` (an Optuna space's helper parameters) are removed; every
    other key must be a field of the trial module's TrialConfig (checked by its ``from_dict``).
    """
    flat = {k: v for k, v in config.items() if k != "variant"}
    flat.update(config.get("variant") or {})
    for k in (*drop_keys, SEARCH_NUMBER):
        flat.pop(k, None)
    return flat


def trial_id(cfg_dict: Mapping[str, Any]) -> str:
    """Deterministic id of a trial: a hash of its normalised config (runtime keys left out, and
    fields added since ids were first recorded while they keep their old meaning)."""
    ident = {
        k: v
        for k, v in cfg_dict.items()
        if k not in RUNTIME_KEYS and not (k in ADDED_FIELDS and v == ADDED_FIELDS[k])
    }
    text = json.dumps(ident, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def resolve(config: Mapping[str, Any], settings: TrialSettings) -> tuple[str, dict[str, Any]]:
    """A Tune config's trial_id and normalised TrialConfig dict."""
    _, config_cls = load_trial_api(settings.trial_module)
    flat = flatten_config(config, settings.drop_keys)
    cfg_dict = config_cls.from_dict(flat).to_dict()
    return trial_id(cfg_dict), cfg_dict


def search_number(config: Mapping[str, Any]) -> int | None:
    """The Optuna trial number a search or confirmation trial belongs to (None in a grid)."""
    return {**config, **(config.get("variant") or {})}.get(SEARCH_NUMBER)


class TrialNamer:
    """Names Tune trials after the deterministic trial_id (``<family>_s<seed>_<trial_id>``).

    Args:
        settings: the sweep's trial settings.
        folder: name trial folders instead: the name plus Tune's own trial id, so that two
            search trials that happen to draw the same config never share a folder.
    """

    def __init__(self, settings: TrialSettings, folder: bool = False) -> None:
        self.settings = settings
        self.folder = folder

    def __call__(self, trial: Any) -> str:
        members = member_configs(trial.config)
        tid, cfg = resolve(members[0], self.settings)
        name = f"{cfg['family']}_s{cfg['seed']}_{tid}"
        if PACK in trial.config:
            name = f"pack{len(members)}_{name}"
        return f"{name}_{trial.trial_id}" if self.folder else name
