"""ibnn.nn.memory: freed CPU memory stays in the process (no page faults on reuse)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ibnn.nn.memory import reuse_freed_memory

_FAULTS = """
import resource, sys, torch
from ibnn.nn.memory import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[1] == "keep" else False
for _ in range(2):  # 64 MiB blocks, freed: the heap reaches its size
    x = torch.ones(4096, 4096)
    del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    y = torch.ones(4096, 4096)  # written in full: every page touched
    del y
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux's")
def test_reused_blocks_no_longer_page_fault():
    """With glibc's defaults every 64 MiB tensor is a fresh mmap (16k faults each); with
    freed memory kept, the same loop reuses the heap."""
    applied, kept = _page_faults("keep")
    _, default = _page_faults("default")
    assert applied == "True"
    assert default > 10 * 4096  # the loop's 10 x 16384 pages, roughly
    assert kept < default / 4  # at most a couple of the 10 blocks come fresh


def test_asking_twice_is_harmless():
    assert reuse_freed_memory() == reuse_freed_memory()
