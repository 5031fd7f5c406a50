"""Ray Tune + Optuna sweeps: every experiment of the paper as a resumable sweep writing Parquet.

A sweep script declares a ``SweepSpec`` and calls ``main``::

    from ibnn.sweep import SweepSpec, main

    SPEC = SweepSpec(name="expressivity", description="...", axes=lambda ctx: {"C": (1, 2, 4)})
    if __name__ == "__main__":
        raise SystemExit(main(SPEC))
"""

from __future__ import annotations

from ibnn.sweep.runner import main
from ibnn.sweep.spec import IMAGE_DATASETS, SMOKE, SweepContext, SweepSpec, expand_grid
from ibnn.sweep.trainable import TrialSettings, make_trainable, trial_id

__all__ = [
    "IMAGE_DATASETS",
    "SMOKE",
    "SweepContext",
    "SweepSpec",
    "TrialSettings",
    "expand_grid",
    "main",
    "make_trainable",
    "trial_id",
]
