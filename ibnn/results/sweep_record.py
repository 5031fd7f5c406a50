"""``sweep.json``: the record of a sweep folder, one typed value written and read here only.

The sweep runner (``ibnn.sweep.runner``) writes it when a run starts, when a search's
confirmation is chosen and when the run ends; ``ibnn.sweep`` reads it to decide whether a run
may use a folder, and ``analysis`` to report a sweep's state. Every field is written by the
runner; a record written by an older version may lack some (they read as their defaults), and
keys this version does not know are kept as read (``extra``) and written back unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from ibnn.results.storage import Storage

__all__ = ["SWEEP_JSON", "SweepRecord", "read_record", "write_record"]

SWEEP_JSON = "sweep.json"  # the record's file name in the sweep folder
# Fields written only once they are known (absent before).
_LATER = ("study", "confirm", "counts", "trial_status")


@dataclass
class SweepRecord:
    """What ``sweep.json`` holds."""

    sweep: str = ""  # the sweep folder name
    experiment: str = ""  # the experiment (the sweep spec's name)
    kind: str = ""  # "grid" or "search" (the spec's kind)
    dataset: str = ""  # the dataset of every trial
    description: str = ""  # the spec's one-line description
    script: str = ""  # the sweep script, sweeps/<experiment>.py
    args: list[str] | None = None  # the arguments that started the sweep
    spec: dict[str, Any] = field(default_factory=dict)  # the trial set (constants, variants...)
    fingerprint: str = ""  # hash of ``spec``: two runs are the same sweep when these agree
    expected_trials: int | None = None  # trials the sweep will have (a search's: before confirming)
    neuron: dict[str, Any] | None = None  # the chosen neuron of the implicit families
    neuron_source: dict[str, Any] | None = None  # where it came from (flags, default, a search)
    resources_per_trial: dict[str, float] = field(default_factory=dict)  # Ray resources
    ray_version: str = ""  # the driver's Ray
    provenance: dict[str, Any] = field(default_factory=dict)  # the code that started the sweep
    ray_dir: str = ""  # Ray Tune's folder of the sweep (URI)
    status: str = ""  # "running", "interrupted" or "finished"
    started: str | None = None  # when the sweep started (UTC, ISO 8601)
    finished: str | None = None  # when it finished (None while running or interrupted)
    resumed: list[dict[str, Any]] = field(default_factory=list)  # each resume: at, args, code
    study: dict[str, str] | None = None  # a search's Optuna study: name, storage (redacted)
    confirm: dict[str, Any] | None = None  # a search's confirmation: top, seeds, variants
    counts: dict[str, int] | None = None  # at the end of a run: ok, failed, (pruned), total
    trial_status: dict[str, int] | None = None  # at the end of a run: trials per status
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepRecord:
        """The record of a parsed ``sweep.json`` (missing fields: their defaults)."""
        if not isinstance(data, dict):
            raise ValueError(f"{SWEEP_JSON} must hold a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        return cls(**known, extra={k: v for k, v in data.items() if k not in names})

    @classmethod
    def from_json(cls, text: str | bytes) -> SweepRecord:
        """The record of a ``sweep.json`` text (ValueError if it is not a JSON object)."""
        return cls.from_dict(json.loads(text))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written (fields not known yet left out)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        for name in _LATER:
            if out[name] is None:
                del out[name]
        if not out["resumed"]:
            del out["resumed"]
        return {**self.extra, **out}


def read_record(storage: Storage, sweep: str) -> SweepRecord | None:
    """The record of ``<storage>/<sweep>``, or None when the folder has none."""
    if not storage.exists(sweep, SWEEP_JSON):
        return None
    return SweepRecord.from_dict(storage.read_json(f"{sweep}/{SWEEP_JSON}"))


def write_record(storage: Storage, record: SweepRecord) -> None:
    """Writes the record into its sweep folder (``record.sweep``), replacing the old one."""
    if not record.sweep:
        raise ValueError("a SweepRecord needs its sweep folder name (sweep) to be written")
    storage.write_json(f"{record.sweep}/{SWEEP_JSON}", record.to_dict())
