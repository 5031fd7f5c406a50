"""Supplementary Information: IBNNs built from trained SM weights, without retraining.

Each SM trial is evaluated as itself and, through ``to_ibnn``, at every lam of ``transfer_lams``
(eval rows with family "ibnn_transfer"), clean and under PGD generated on the SM model.

    python sweeps/transfer.py --dataset fmnist --storage results
"""

from __future__ import annotations

from ibnn.sweep import SweepContext, SweepSpec, main

LAMS = (-10.0, -5.0, -2.0, -1.0, -0.5, -0.2, -0.1, -0.05, 0.01, 0.02, 0.04)  # p = 10: lam < 0.05
PGD_EPS = {"fmnist": (0.0, 0.02, 0.05, 0.1), "svhn": (0.0, 2 / 255, 4 / 255, 8 / 255)}


def overrides(ctx: SweepContext) -> dict[str, tuple[float, ...]]:
    """The transferred lams and PGD radii (two of each in smoke mode)."""
    if ctx.smoke:
        return {"transfer_lams": (-1.0, 0.04), "pgd_eps": (0.0, 0.05)}
    eps = PGD_EPS.get(ctx.dataset, PGD_EPS["svhn"])
    return {"transfer_lams": LAMS, "pgd_eps": eps}


SPEC = SweepSpec(
    name="transfer",
    description="Supp.: lam applied to SM-trained weights (to_ibnn), accuracy and robustness",
    overrides=overrides,
    families=("sm",),
    evals=("clean", "pgd_surrogate"),
    seeds=5,
    chosen_neuron=False,
)

if __name__ == "__main__":
    raise SystemExit(main(SPEC))
