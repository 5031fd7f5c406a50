"""Fig. 2: decision boundaries of a 3-unit network on the two-concentric-arrows 2-D set.

Varies lam (left panel) and p (right panel); each trial also writes its boundary grid
(table "boundaries": class-1 probability on a grid of [-1, 1]^2).

    python sweeps/toy2d.py --storage results
"""

from __future__ import annotations

from ibnn.sweep import SweepContext, SweepSpec, main

LAMS = (-10.0, -3.0, -1.0, -0.3, -0.1, 0.02)  # 0.02 < 1/(2p) for every p below
PS = (2.0, 5.0, 10.0, 20.0)
# --protocol cpu: 4 lams x 3 ps (a toy trial's epoch costs about a second on a CPU core).
CPU_LAMS = (-3.0, -1.0, -0.3, 0.02)
CPU_PS = (5.0, 10.0, 20.0)


def axes(ctx: SweepContext) -> dict[str, tuple[float, ...]]:
    """lam x p for the IBNN (the SM baseline ignores both)."""
    if ctx.protocol == "smoke":
        return {"lam": (-1.0,), "p": (10.0,)}
    if ctx.protocol == "cpu":
        return {"lam": CPU_LAMS, "p": CPU_PS}
    return {"lam": LAMS, "p": PS}


SPEC = SweepSpec(
    name="toy2d",
    description="Fig. 2: toy 2-D decision boundaries for several lam and p, SM vs IBNN",
    axes=axes,
    datasets=("toy2d",),
    seeds=5,
    chosen_neuron=False,
    boundaries=True,
)

if __name__ == "__main__":
    raise SystemExit(main(SPEC))
