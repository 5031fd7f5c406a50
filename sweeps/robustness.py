"""Figs. 4 and 5, robustness: accuracy under PGD (surrogate and white-box) and Pixle attacks.

python sweeps/robustness.py --dataset fmnist --storage results
"""

from __future__ import annotations

from ibnn.sweep import SweepContext, SweepSpec, main
from ibnn.vocab import EVALS

# PGD L-inf radii on the [0, 1] pixel scale, from 0 to a dataset-dependent maximum.
PGD_EPS = {
    "fmnist": (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2),
    "svhn": (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 12 / 255, 16 / 255),
    "cifar10": (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 12 / 255, 16 / 255),
}


def overrides(ctx: SweepContext) -> dict[str, tuple[float, ...]]:
    """The attack strengths of this dataset (two in smoke mode)."""
    return {"pgd_eps": (0.0, 0.05) if ctx.smoke else PGD_EPS[ctx.dataset]}


SPEC = SweepSpec(
    name="robustness",
    description="Figs. 4-5: accuracy under PGD (SM surrogate and white-box) and Pixle attacks",
    overrides=overrides,
    evals=EVALS,  # every evaluation: clean, PGD (surrogate, white-box), Pixle, Jacobian, curvature
    seeds=5,
)

if __name__ == "__main__":
    raise SystemExit(main(SPEC))
