"""``--resume`` with other flags than the run that started the sweep: refused, naming them.

Ray Tune restores a sweep from its saved state (``tuner.pkl``, the experiment state): the trial
configs, the resources per trial, the failure and concurrency settings and the searcher are the
pickled ones, not the new command line's. A changed flag would therefore be ignored silently;
instead the resumed run is refused with the list of flags that differ. Only the flags that concern
the driver alone (``APPLIED_ON_RESUME``: which cluster to join) may change, and do apply.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from typing import Any

from ibnn.results import Storage
from ibnn.results.sweep_record import read_record
from ibnn.sweep.command_line.args import SweepArgs, parse_args
from ibnn.sweep.folder import FolderError
from ibnn.sweep.spec import SweepSpec

__all__ = ["APPLIED_ON_RESUME", "changed_flags", "check_resume_flags"]

# SweepArgs fields a resumed run may change: they are the driver's own, not part of Tune's state.
APPLIED_ON_RESUME: frozenset[str] = frozenset({"address", "verbose"})
# SweepArgs fields that are bookkeeping, not flags of their own.
_NOT_FLAGS = ("resume", "argv", "w_extent_given")


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def changed_flags(old: SweepArgs, new: SweepArgs) -> dict[str, tuple[Any, Any]]:
    """The flags whose parsed values differ, ``{"--flag": (old, new)}`` (compared after parsing,
    so spelling and order do not matter; ``APPLIED_ON_RESUME`` flags included)."""
    out = {}
    for f in dataclasses.fields(SweepArgs):
        if f.name in _NOT_FLAGS:
            continue
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a != b:
            out[_flag(f.name)] = (a, b)
    return out


def check_resume_flags(spec: SweepSpec, storage: Storage, sweep: str, args: SweepArgs) -> list[str]:
    """Compares a ``--resume`` run's flags with those recorded in ``sweep.json`` (``args``).

    Returns:
        Lines saying which changed flags apply (only ``APPLIED_ON_RESUME`` ones); [] when
        nothing changed, when this is not a resume, or when there is no ``sweep.json`` yet.

    Raises:
        FolderError: any other flag differs (the message names each, with both values), or the
            recorded arguments no longer parse.
    """
    record = read_record(storage, sweep) if args.resume else None
    if record is None or record.args is None:
        return []
    recorded = record.args
    where = storage.join_uri(sweep)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            old = parse_args(spec, [str(a) for a in recorded])
    except SystemExit:
        raise FolderError(
            f"--resume: the arguments that started {where} ({' '.join(recorded)}) no longer "
            f"parse ({err.getvalue().strip().splitlines()[-1]}); start a new sweep (--name)"
        ) from None
    diff = changed_flags(old, args)
    refused = {k: v for k, v in diff.items() if k[2:].replace("-", "_") not in APPLIED_ON_RESUME}
    if refused:
        listed = ", ".join(f"{k} ({a!r} -> {b!r})" for k, (a, b) in refused.items())
        raise FolderError(
            f"--resume continues {where} with the settings it started with (Ray Tune restores "
            f"them from its saved state), so these changed flags would be ignored: {listed}. "
            f"Nothing was changed; rerun with the original flags ({' '.join(recorded)}) plus "
            f"--resume, or start a new sweep (--name). Flags that may change on --resume: "
            f"{', '.join(sorted(_flag(f) for f in APPLIED_ON_RESUME))}."
        )
    return [f"--resume applies the changed flag {k}: {a!r} -> {b!r}" for k, (a, b) in diff.items()]
