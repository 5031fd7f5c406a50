"""Fig. 6, expressivity: accuracy against parameter count, varying the UCN width C.

python sweeps/expressivity.py --dataset fmnist --storage results
"""

from __future__ import annotations

from ibnn.sweep import SweepContext, SweepSpec, main

# Widths around the paper's central UCN(L, C) of each dataset (L stays the dataset's).
WIDTHS = {"fmnist": (1, 2, 3, 4, 6, 8), "svhn": (1, 2, 3, 4, 6, 8), "cifar10": (2, 4, 8, 12, 16)}


def axes(ctx: SweepContext) -> dict[str, tuple[int, ...]]:
    """The channel counts C of this dataset (smoke: the two smallest; cpu: all but the widest,
    whose IBNN trials cost the most)."""
    keep = {"smoke": 2, "cpu": -1}.get(ctx.protocol)
    return {"C": WIDTHS[ctx.dataset][:keep]}


SPEC = SweepSpec(
    name="expressivity",
    description="Fig. 6: accuracy vs number of parameters (UCN width C), SM vs IBNN",
    axes=axes,
    seeds=10,
)

if __name__ == "__main__":
    raise SystemExit(main(SPEC))
