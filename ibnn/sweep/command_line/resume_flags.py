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
from collections.abc import Mapping
from typing import Any

from ibnn.results import Storage
from ibnn.results.sweep_record import read_record
from ibnn.sweep.command_line.args import SweepArgs, parse_args
from ibnn.sweep.command_line.flags import build_parser
from ibnn.sweep.folder import FolderError
from ibnn.sweep.spec import SweepSpec

__all__ = ["APPLIED_ON_RESUME", "changed_flags", "check_resume_flags"]

# SweepArgs fields a resumed run may change: they are the driver's own, not part of Tune's state.
APPLIED_ON_RESUME: frozenset[str] = frozenset({"address", "verbose"})
# SweepArgs fields that are bookkeeping, not flags of their own.
_NOT_FLAGS = ("resume", "argv", "w_extent_given")


def _flag(field: str, options: Mapping[str, str] | None = None) -> str:
    """The option of a SweepArgs field (``sets`` -> ``--set``, from the parser where given)."""
    return (options or {}).get(field) or "--" + field.replace("_", "-")


def _options(spec: SweepSpec) -> dict[str, str]:
    """SweepArgs field -> its option on the command line, as the parser declares it."""
    parser = build_parser(spec)
    return {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}


def _shown(value: Any) -> str:
    """A flag's value as typed: ``--set``/``--axis`` pairs as ``KEY=VALUE`` (none: "none")."""
    pairs = isinstance(value, tuple) and all(isinstance(v, tuple) and len(v) == 2 for v in value)
    if not pairs:
        return repr(value)
    listed = (f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in value)
    return " ".join(listed) or "none"


def changed_flags(
    old: SweepArgs, new: SweepArgs, options: Mapping[str, str] | None = None
) -> dict[str, tuple[Any, Any]]:
    """The flags whose parsed values differ, ``{"--flag": (old, new)}`` (compared after parsing,
    so spelling and order do not matter; ``APPLIED_ON_RESUME`` flags included); ``options``
    maps fields to their options (default ``--<field>``)."""
    out = {}
    for f in dataclasses.fields(SweepArgs):
        if f.name in _NOT_FLAGS:
            continue
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a != b:
            out[_flag(f.name, options)] = (a, b)
    return out


def check_resume_flags(spec: SweepSpec, storage: Storage, sweep: str, args: SweepArgs) -> list[str]:
    """Compares a ``--resume`` run's flags with those recorded in ``sweep.json`` (``args``).

    Returns:
        Lines saying which changed flags apply (only ``APPLIED_ON_RESUME`` ones); [] when
        nothing changed, when this is not a resume, when there is no ``sweep.json`` yet, or
        when the folder holds another experiment's sweep (``check_folder`` refuses that).

    Raises:
        FolderError: any other flag differs (the message names each, with both values), or the
            recorded arguments no longer parse.
    """
    record = read_record(storage, sweep) if args.resume else None
    if record is None or record.args is None or record.experiment not in ("", spec.name):
        return []  # another experiment's folder: check_folder refuses it, naming what it holds
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
    options = _options(spec)
    diff = changed_flags(old, args, options)
    applied = {_flag(f, options) for f in APPLIED_ON_RESUME}
    refused = {k: v for k, v in diff.items() if k not in applied}
    if refused:
        listed = ", ".join(f"{k} ({_shown(a)} -> {_shown(b)})" for k, (a, b) in refused.items())
        raise FolderError(
            f"--resume continues {where} with the settings it started with (Ray Tune restores "
            f"them from its saved state), so these changed flags would be ignored: {listed}. "
            f"Nothing was changed; rerun with the original flags ({' '.join(recorded)}) plus "
            f"--resume, or start a new sweep (--name). Flags that may change on --resume: "
            f"{', '.join(sorted(applied))}."
        )
    return [
        f"--resume applies the changed flag {k}: {_shown(a)} -> {_shown(b)}"
        for k, (a, b) in diff.items()
    ]
