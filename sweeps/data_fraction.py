"""Fig. 3, data efficiency: accuracy against the fraction of the training set used.

python sweeps/data_fraction.py --dataset fmnist --storage results
"""

from __future__ import annotations

from ibnn.sweep import SweepContext, SweepSpec, main

FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
CPU_FRACTIONS = (0.1, 0.2, 0.4, 0.7, 1.0)  # --protocol cpu: five of them


def axes(ctx: SweepContext) -> dict[str, tuple[float, ...]]:
    """Nested training subsets (same seed: a smaller fraction is a subset of a larger one)."""
    chosen = {"smoke": (0.5, 1.0), "cpu": CPU_FRACTIONS}.get(ctx.protocol, FRACTIONS)
    return {"train_fraction": chosen}


SPEC = SweepSpec(
    name="data_fraction",
    description="Fig. 3: fraction of the training data IBNN needs to reach SM's best accuracy",
    axes=axes,
    seeds=20,
)

if __name__ == "__main__":
    raise SystemExit(main(SPEC))
