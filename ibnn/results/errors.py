"""Storage and path problems as one line: the location and the cause, exit status 2.

pyarrow reports a storage problem as ``OSError`` (a missing or unwritable folder, a regular file
in the path, a read-only mount, an unreachable object store; its AWS messages span lines) or
``pyarrow.ArrowInvalid`` (an unknown URI scheme, a file that is not Parquet or is truncated).
The commands (sweeps, ``python -m ibnn.sweep compact``, ``python -m analysis``) catch exactly
:data:`STORAGE_ERRORS` around their storage work and print :func:`one_line` instead of a
traceback; ``--verbose`` adds the traceback. Nothing is retried or cleaned up here: the command
stops where the problem arose, so files already written stay as they are. Local output files
are checked before any work (:func:`check_can_create`, :func:`check_can_write_file`) and
written whole or not at all (:func:`write_text_atomic`).
"""

from __future__ import annotations

import errno
import os
import secrets
import sys
import traceback
from pathlib import Path

import pyarrow as pa

__all__ = [
    "STORAGE_ERRORS",
    "STORAGE_EXIT",
    "check_can_create",
    "check_can_write_file",
    "one_line",
    "report",
    "write_text_atomic",
]

STORAGE_ERRORS: tuple[type[BaseException], ...] = (OSError, pa.ArrowInvalid)
STORAGE_EXIT = 2  # the exit status of a refused storage or path


def one_line(where: str, err: BaseException) -> str:
    """``<where>: <cause>`` on one line (the cause's own lines joined, whitespace collapsed).

    Args:
        where: the location as the user gave it (``--storage s3://...``, a file's path).
        err: the exception pyarrow or the OS raised.
    """
    if isinstance(err, OSError) and err.strerror:  # without "[Errno N]"
        cause = err.strerror
        if err.filename and str(err.filename) not in where:
            cause += f": {err.filename}"
    else:
        cause = str(err)
    return f"{where}: {' '.join(cause.split()) or type(err).__name__}"


def report(prog: str, where: str, err: BaseException, verbose: bool = False) -> int:
    """Prints ``<prog>: error: <where>: <cause>`` to stderr (and the traceback if ``verbose``).

    Returns:
        :data:`STORAGE_EXIT`, for the command to return.
    """
    if verbose:
        traceback.print_exception(err, file=sys.stderr)
    print(f"{prog}: error: {one_line(where, err)}", file=sys.stderr, flush=True)
    return STORAGE_EXIT


def check_can_create(path: Path) -> None:
    """Checks, in a fraction of a second, that ``path`` (a local file or folder) can be created
    or replaced: its nearest existing ancestor folder accepts a new entry (a probe folder is
    made and removed there), so a read-only mount or a regular file in the path is found
    before any work rather than after it.

    Raises:
        OSError: naming the ancestor and the cause (``NotADirectoryError`` for a regular file).
    """
    base = Path(path).expanduser().absolute().parent
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{base} is a regular file, not a folder")
    probe = base / f".ibnn-probe.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        probe.mkdir()
    except OSError as err:
        raise type(err)(err.errno, f"cannot create entries in {base}: {err.strerror}") from err
    probe.rmdir()


def check_can_write_file(path: Path) -> None:
    """:func:`check_can_create` for a file to be written: also refuses a path that is an
    existing folder (before any work, rather than when the file is written at the end).

    Raises:
        OSError: ``IsADirectoryError`` for a folder, else as :func:`check_can_create`.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"{path} is a folder, not a file")
    check_can_create(path)


def write_text_atomic(path: Path, text: str) -> Path:
    """Writes ``text`` to ``path`` (folders created) through a hidden temporary file in the same
    folder and a rename, so that an interrupted write leaves the earlier file whole; returns the
    absolute path."""
    path = Path(path).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
