"""The sweep's clock: the timestamps written into ``sweep.json`` and the trials table."""

from __future__ import annotations

import datetime as _dt

__all__ = ["now"]


def now() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
