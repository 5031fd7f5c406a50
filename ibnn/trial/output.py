"""The output folder of ``python -m ibnn.trial --out``: checked before any work, written whole.

Protocol:

1. :func:`check_output` runs before any data is loaded. The folder must be new, empty, or hold a
   trial's files only (:data:`TRIAL_FILES`); a trial's folder is replaced only with
   ``overwrite=True``. The nearest existing ancestor must be a folder we can create entries in
   (a probe folder is made and removed), so a read-only mount or a regular file in the path is
   refused in seconds, not after hours of training.
2. :func:`write_folder` writes every file into a hidden sibling ``.<name>.<pid>.<hex>.new``, then
   moves it into place by rename: a new folder appears whole; an existing one is renamed aside
   (``.<name>.<pid>.<hex>.old``), the new one renamed in, and the old one deleted. SIGINT and
   SIGTERM are held back during the two renames, so an interruption leaves the old trial or the
   new one at ``out``, never a mix. Limit: a hard kill (SIGKILL, power loss) between the two
   renames leaves the old trial in its ``.old`` sibling and no folder at ``out``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from ibnn.results.errors import check_can_create

__all__ = ["TRIAL_FILES", "OutputError", "check_output", "write_folder"]

TRIAL_FILES = (
    "config.json",
    "result.json",
    "epochs.parquet",
    "evals.parquet",
    "boundary.parquet",
)
"""The files a trial writes into its ``--out`` folder (the parquet ones when they have rows)."""


class OutputError(ValueError):
    """``--out`` cannot take the trial: the message names the path and the rule."""


def check_output(out: Path, *, overwrite: bool = False) -> None:
    """Refuses an output folder the trial could not, or must not, write.

    Args:
        out: the trial's output folder.
        overwrite: allow replacing a folder that already holds a trial.

    Raises:
        OutputError: ``out`` is not a folder, holds other files than a trial's, holds a trial
            and ``overwrite`` is false, or its nearest existing ancestor is not writable.
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is not a folder: give a new folder or a trial's folder")
    if out.is_dir():
        entries = sorted(p.name for p in out.iterdir())
        foreign = [name for name in entries if name not in TRIAL_FILES]
        if foreign:
            raise OutputError(
                f"--out {out} holds files that are not a trial's ({', '.join(foreign[:5])}): "
                "give a new or empty folder"
            )
        if entries and not overwrite:
            raise OutputError(
                f"--out {out} already holds a trial ({', '.join(entries)}): "
                "pass --overwrite to replace it, or give a new folder"
            )
    _check_writable(out)


def _check_writable(out: Path) -> None:
    """The folder that will hold ``out``'s staging sibling accepts new entries."""
    try:
        check_can_create(out)
    except OSError as err:
        raise OutputError(f"--out {out}: {err.strerror}") from err


def write_folder(out: Path, writers: Mapping[str, Callable[[Path], None]]) -> None:
    """Writes ``out`` whole: each ``writers[name](path)`` writes file ``name``; then a rename.

    An exception (KeyboardInterrupt included) while writing leaves ``out`` as it was and removes
    the staging folder.

    Args:
        out: the folder to create or replace (checked by :func:`check_output` first).
        writers: file name -> function writing that file at the given path.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}.{secrets.token_hex(4)}"
    stage = out.parent / f".{out.name}.{tag}.new"
    stage.mkdir()
    try:
        for name, write in writers.items():
            write(stage / name)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.{tag}.old"
    with _signals_held():
        if out.exists():
            out.rename(old)
        stage.rename(out)
    shutil.rmtree(old, ignore_errors=True)


class _signals_held:
    """Holds SIGINT and SIGTERM back (main thread only) and delivers them on exit."""

    SIGNALS = {signal.SIGINT, signal.SIGTERM}

    def __enter__(self) -> None:
        self.active = threading.current_thread() is threading.main_thread()
        if self.active:
            self.before = signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGNALS)

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.before)
