"""Ray Tune + Optuna sweeps: every experiment of the paper as a resumable sweep writing Parquet.

A sweep script declares a ``SweepSpec`` and calls ``main``::

    from ibnn.sweep import SweepSpec, main

    SPEC = SweepSpec(name="expressivity", description="...", axes=lambda ctx: {"C": (1, 2, 4)})
    if __name__ == "__main__":
        raise SystemExit(main(SPEC))

The package is laid out by concern (docs/sweeps.md, "Code layout", states which part may import
which; ``tests/ibnn/test_layout.py`` enforces it): ``spec`` (what a script declares),
``command_line`` (the flags), ``plan`` (the trials of a run), ``folder`` (the sweep folder's
rules; its record ``sweep.json`` is ``ibnn.results.sweep_record``), ``trials`` (running them
under Tune), ``search`` (Optuna, pruning, confirmation), ``cluster`` (preflight, resources, data
staging, lease, provenance) and ``runner``, which composes them.
"""

from __future__ import annotations

from ibnn.sweep.command_line.args import SweepArgs, parse_args
from ibnn.sweep.plan import SweepPlan, build_plan
from ibnn.sweep.runner import main
from ibnn.sweep.spec import IMAGE_DATASETS, SMOKE, SweepContext, SweepSpec, expand_grid
from ibnn.sweep.trials.identity import TrialSettings, flatten_config, trial_id
from ibnn.sweep.trials.trainable import make_trainable

__all__ = [
    "IMAGE_DATASETS",
    "SMOKE",
    "SweepArgs",
    "SweepContext",
    "SweepPlan",
    "SweepSpec",
    "TrialSettings",
    "build_plan",
    "expand_grid",
    "flatten_config",
    "main",
    "make_trainable",
    "parse_args",
    "trial_id",
]
