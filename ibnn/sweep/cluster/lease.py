"""One driver per sweep: a lease file in the sweep folder, renewed by a heartbeat.

A driver takes the lease (``<storage>/<sweep>/driver.lease.json``) before it writes anything else
there and renews it every ``ttl_s / 4`` seconds while the sweep runs; it deletes the file when it
ends. Another driver on the same folder is refused with a message naming the holder (host, pid,
start) while the lease is live. A lease is free when its holder stopped renewing it for more than
``ttl_s`` seconds (a driver that died, on any machine) or when its holder ran on this host and
its process no longer exists (a driver killed here: no need to wait).

The file lives on the results storage itself (a local or shared disk, or object storage through
pyarrow), so it needs no other service. Object stores offer no "create if absent" through
pyarrow, so taking a lease is write, wait ``settle_s``, read back: of two drivers that start at
the same moment, the one whose write landed last keeps the lease and the other is refused.
A holder that finds its lease taken over (it was suspended for longer than ``ttl_s``) interrupts
its own run, as Ctrl-C would. Expiry compares wall clocks of different machines: keep them in
sync (NTP), as every cloud image does.
"""

from __future__ import annotations

import _thread
import datetime as _dt
import json
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from ibnn.results import Storage

__all__ = ["DEFAULT_TTL_S", "LEASE_FILE", "Holder", "Lease", "LeaseError", "took_over"]

LEASE_FILE = "driver.lease.json"
DEFAULT_TTL_S = 60.0  # a lease not renewed for this long is free


class LeaseError(Exception):
    """The sweep folder is held by another driver (the message names it and what to do)."""


@dataclass(frozen=True)
class Holder:
    """The driver that holds (or held) a sweep's lease, as recorded in the lease file."""

    host: str  # host name of the driver's machine
    pid: int  # the driver's process id on that host
    started: str  # when it took the lease (ISO 8601, UTC)
    renewed: float  # its last heartbeat (seconds since the epoch)
    ttl_s: float  # the lease is free once renewed + ttl_s has passed
    token: str  # unique per acquisition: tells two drivers on one host apart

    @classmethod
    def new(cls, ttl_s: float) -> Holder:
        """This process as a holder."""
        started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        return cls(socket.gethostname(), os.getpid(), started, time.time(), ttl_s, uuid.uuid4().hex)

    def silent_s(self, at: float) -> float:
        """Seconds since the last heartbeat."""
        return at - self.renewed

    def gone(self, at: float) -> bool:
        """Whether the lease is free: expired, or held by a process of this host that died."""
        if self.silent_s(at) > self.ttl_s:
            return True
        return self.host == socket.gethostname() and not _pid_alive(self.pid)

    def describe(self, at: float) -> str:
        return (
            f"driver pid {self.pid} on host {self.host!r} (started {self.started}, last "
            f"heartbeat {self.silent_s(at):.0f} s ago)"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class Lease:
    """The lease of one sweep folder, held by this process.

    Args:
        storage: the results root.
        sweep: the sweep folder name.
        ttl_s: how long a lease stays valid without a heartbeat.
        settle_s: the wait between writing the lease and reading it back.
    """

    def __init__(
        self, storage: Storage, sweep: str, ttl_s: float = DEFAULT_TTL_S, settle_s: float = 0.5
    ) -> None:
        if not ttl_s > 0 or settle_s < 0:
            raise ValueError(f"`ttl_s > 0 and settle_s >= 0` must hold, got {ttl_s}, {settle_s}")
        self.storage = storage
        self.sweep = sweep
        self.ttl_s = ttl_s
        self.settle_s = settle_s
        self.rel = f"{sweep}/{LEASE_FILE}"
        self.mine: Holder | None = None
        self.taken_over: Holder | None = None  # the dead holder this process replaced, if any
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._made_folder = False

    def holder(self) -> Holder | None:
        """The holder recorded in the lease file, None when there is none (or it is unreadable)."""
        if not self.storage.exists(self.sweep, LEASE_FILE):
            return None
        try:
            return Holder(**self.storage.read_json(self.rel))
        except (OSError, ValueError, TypeError):  # a half-written or foreign file: no holder
            return None

    def check(self) -> Holder | None:
        """Raises LeaseError if another live driver holds the lease; returns a dead holder (whose
        lease this process may take over) or None. Changes nothing."""
        held = self.holder()
        if held is None or (self.mine is not None and held.token == self.mine.token):
            return None
        at = time.time()
        if held.gone(at):
            return held
        where = self.storage.join_uri(self.sweep)
        raise LeaseError(
            f"{where} is being run by another {held.describe(at)}. One driver per sweep: stop "
            f"that one first (Ctrl-C, or `ray job stop`), or, if it died, wait until its lease "
            f"expires ({held.ttl_s - held.silent_s(at):.0f} s; {LEASE_FILE} there) and run again "
            f"with --resume."
        )

    def acquire(self) -> None:
        """Takes the lease (see the module docstring); raises LeaseError if another holds it."""
        self.taken_over = self.check()
        self._made_folder = not self.storage.exists(self.sweep)
        me = Holder.new(self.ttl_s)
        self._write(me)
        time.sleep(self.settle_s)
        held = self.holder()
        if held is None or held.token != me.token:
            self._made_folder = False
            self.check()  # names the driver that won the race
            raise LeaseError(f"lost the race for the lease of {self.storage.join_uri(self.sweep)}")
        self.mine = me

    def renew(self) -> bool:
        """Records a heartbeat; False (and nothing written) when another driver took the lease."""
        if self.mine is None:
            raise ValueError("renew() needs a held lease: call acquire() first")
        held = self.holder()
        if held is None or held.token != self.mine.token:
            return False
        self.mine = Holder(**{**asdict(self.mine), "renewed": time.time()})
        self._write(self.mine)
        return True

    def release(self) -> None:
        """Stops the heartbeat and deletes the lease file if this process still holds it (and the
        sweep folder, if taking the lease created it and it is still empty)."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        held = self.holder()
        if self.mine is not None and held is not None and held.token == self.mine.token:
            self.storage.fs.delete_file(self.storage.path(self.rel))
        self.mine = None
        if self._made_folder and self.storage.is_local:
            folder = self.storage.path(self.sweep)
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)

    def start_heartbeat(self) -> None:
        """Renews the lease every ttl_s / 4 in a daemon thread until ``release``."""
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="ibnn-lease", daemon=True)
        self._beat.start()

    def __enter__(self) -> Lease:
        self.acquire()
        self.start_heartbeat()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _write(self, holder: Holder) -> None:
        self.storage.write_bytes(self.rel, json.dumps(asdict(holder), indent=2).encode())

    def _heartbeat(self) -> None:
        warned = False
        while not self._stop.wait(self.ttl_s / 4):
            try:
                if self.renew():
                    warned = False
                    continue
            except OSError as err:  # storage unreachable for a moment: try again next beat
                if not warned:
                    print(f"warning: cannot renew the sweep lease: {err}", file=sys.stderr)
                    warned = True
                continue
            print(
                f"error: another driver took over the lease of "
                f"{self.storage.join_uri(self.sweep)} (this one was silent for over "
                f"{self.ttl_s:.0f} s); stopping this run",
                file=sys.stderr,
                flush=True,
            )
            _thread.interrupt_main()
            return


def took_over(lease: Lease) -> list[str]:
    """A line saying whose dead lease ``lease`` replaced ([] if it replaced none)."""
    dead = lease.taken_over
    if dead is None:
        return []
    return [f"Took over the sweep lease of the {dead.describe(time.time())}, which is gone"]
