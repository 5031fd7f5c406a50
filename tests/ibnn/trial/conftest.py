"""Fixtures of the trial tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory):
    """An empty data root: Fashion-MNIST is taken from Debian's dataset-fashion-mnist files."""
    return str(tmp_path_factory.mktemp("fmnist"))
