"""Fig. 8, memorization: best validation accuracy with a fraction of training labels corrupted.

python sweeps/memorization.py --dataset fmnist --storage results
"""

from __future__ import annotations

from ibnn.sweep import SweepContext, SweepSpec, main

NOISE = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
CPU_NOISE = (0.0, 0.2, 0.4, 0.6)  # --protocol cpu: four of them


def axes(ctx: SweepContext) -> dict[str, tuple[float, ...]]:
    """Fractions of training labels moved to another class (validation stays clean)."""
    chosen = {"smoke": (0.0, 0.4), "cpu": CPU_NOISE}.get(ctx.protocol, NOISE)
    return {"label_noise": chosen}


SPEC = SweepSpec(
    name="memorization",
    description="Fig. 8: best validation accuracy vs label noise, and the IBNN - SM gap",
    axes=axes,
    seeds=10,
)

if __name__ == "__main__":
    raise SystemExit(main(SPEC))
