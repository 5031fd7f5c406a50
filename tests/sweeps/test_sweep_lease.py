"""One driver per sweep: the lease file (refusal naming the holder, expiry, a dead holder on this
host, heartbeat, takeover detection) and ``--resume`` with changed flags."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from ibnn.results import Storage
from ibnn.sweep import runner
from ibnn.sweep.cluster.lease import LEASE_FILE, Holder, Lease, LeaseError
from tests.sweeps.conftest import FAKE, load_script


def write_holder(storage: Storage, sweep: str, **kw) -> Holder:
    held = Holder(**({"host": "gpu-head-7", "pid": 4242, "started": "2026-01-01T00:00:00+00:00",
                      "renewed": time.time(), "ttl_s": 60.0, "token": "t0"} | kw))  # fmt: skip
    storage.write_json(f"{sweep}/{LEASE_FILE}", held.__dict__)
    return held


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_driver_is_refused_naming_the_first(tmp_path):
    st = Storage(str(tmp_path))
    first, second = Lease(st, "sw", settle_s=0), Lease(st, "sw", settle_s=0)
    first.acquire()
    with pytest.raises(LeaseError) as err:
        second.acquire()
    msg = str(err.value)
    assert f"pid {os.getpid()}" in msg and repr(socket.gethostname()) in msg and "--resume" in msg
    first.release()
    assert not (tmp_path / "sw").exists()  # taking the lease made the folder: gone again
    second.acquire()
    assert second.holder().token == second.mine.token
    second.release()


def test_a_live_foreign_lease_is_refused_and_an_expired_one_taken_over(tmp_path):
    st = Storage(str(tmp_path))
    write_holder(st, "sw")  # another machine, heartbeat just now
    with pytest.raises(LeaseError, match="host 'gpu-head-7'"):
        Lease(st, "sw", settle_s=0).acquire()
    old = write_holder(st, "sw", renewed=time.time() - 61.0)  # silent for longer than its ttl
    lease = Lease(st, "sw", settle_s=0)
    lease.acquire()
    assert lease.taken_over == old and lease.holder().pid == os.getpid()
    lease.release()


def test_a_dead_driver_of_this_host_is_taken_over_at_once(tmp_path):
    st = Storage(str(tmp_path))
    dead = write_holder(st, "sw", host=socket.gethostname(), pid=dead_pid())
    lease = Lease(st, "sw", settle_s=0)
    lease.acquire()
    assert lease.taken_over == dead
    lease.release()
    alive = write_holder(st, "sw", host=socket.gethostname(), pid=os.getppid())
    with pytest.raises(LeaseError, match=f"pid {alive.pid} "):
        Lease(st, "sw", settle_s=0).acquire()


def test_the_heartbeat_renews_and_a_stolen_lease_is_noticed(tmp_path):
    st = Storage(str(tmp_path))
    lease = Lease(st, "sw", ttl_s=2.0, settle_s=0)
    lease.acquire()
    first = lease.holder().renewed
    lease.start_heartbeat()  # every ttl / 4 = 0.5 s
    deadline = time.monotonic() + 30
    while lease.holder().renewed == first:
        assert time.monotonic() < deadline, "the heartbeat never renewed the lease"
        time.sleep(0.1)
    lease.release()
    lease.acquire()
    write_holder(st, "sw", token="someone-else")  # another driver took it over
    assert lease.renew() is False
    assert lease.holder().token == "someone-else"  # and nothing was overwritten
    lease.release()
    assert (tmp_path / "sw" / LEASE_FILE).exists()  # not ours: left alone


def test_the_runner_refuses_a_held_sweep_before_touching_it(tmp_path, capsys):
    spec = load_script("transfer").SPEC
    st = Storage(str(tmp_path))
    holder = Lease(st, "transfer_fmnist", settle_s=0)
    holder.acquire()  # this process plays the running driver
    argv = ["--smoke", "--trial-module", FAKE, "--storage", str(tmp_path)]
    for extra in ([], ["--resume"]):
        assert runner.main(spec, [*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert f"pid {os.getpid()}" in err and "being run by another driver" in err
        assert os.listdir(tmp_path / "transfer_fmnist") == [LEASE_FILE]
    holder.release()


@pytest.mark.slow
def test_resume_refuses_changed_flags_and_applies_the_address(ray_session, tmp_path, capsys):
    spec = load_script("transfer").SPEC
    argv = ["--smoke", "--trial-module", FAKE, "--storage", str(tmp_path)]
    assert runner.main(spec, argv) == 0
    assert not (tmp_path / "transfer_fmnist" / LEASE_FILE).exists()  # released at the end
    before = (tmp_path / "transfer_fmnist" / "sweep.json").read_text()
    capsys.readouterr()
    changed = [*argv, "--resume", "--max-failures", "5", "--data-root", "/elsewhere"]
    assert runner.main(spec, changed) == 2
    err = capsys.readouterr().err
    assert "--max-failures (2 -> 5)" in err and "--data-root ('~/.cache/ibnn/data' -> " in err
    assert "--smoke" not in err.split("ignored:")[1].split(".")[0]  # only the changed ones
    assert (tmp_path / "transfer_fmnist" / "sweep.json").read_text() == before
    # Spelling and order do not count as changes; the driver's own flag applies.
    same = ["--storage", str(tmp_path), "--trial-module=" + FAKE, "--smoke", "--resume"]
    assert runner.main(spec, [*same, "--address", "local"]) == 0
    out = capsys.readouterr().out
    assert "--resume applies the changed flag --address: None -> 'local'" in out
    meta = json.loads((tmp_path / "transfer_fmnist" / "sweep.json").read_text())
    assert meta["resumed"][-1]["args"][-2:] == ["--address", "local"]
