"""The toy 2-D set of Fig. 2: two classes in two concentric arrows, by accept-reject sampling.

Methods, "Datasets": the samples of each class are drawn uniformly over its arrow-shaped mask
(accept-reject sampling from a uniform distribution on the plane). The boundary between the
classes follows the arrow's outline, so it is not convex (Fig. 2 contrasts the convex polygon
that 3 SM neurons draw with the curved IBNN boundaries).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["arrow_label", "toy2d"]


def _in_arrow(x: np.ndarray, scale: float) -> np.ndarray:
    """Whether points ``(N, 2)`` lie in an up-pointing arrow of size ``scale`` centred at 0.

    The arrow is a shaft (half-width 0.3 s, from -0.9 s to 0.05 s) under a triangular head
    (base at 0.05 s with half-width 0.75 s, apex at 0.9 s).
    """
    u, v = np.abs(x[:, 0]) / scale, x[:, 1] / scale
    shaft = (u <= 0.3) & (v >= -0.9) & (v <= 0.05)
    head = (v >= 0.05) & (v <= 0.9) & (u <= 0.75 * (0.9 - v) / 0.85)
    return shaft | head


def arrow_label(x: np.ndarray) -> np.ndarray:
    """Class of 2-D points under the two-arrow masks: 0 inner arrow, 1 outer band, -1 neither.

    Class 0 fills the inner arrow (scale 0.5); class 1 fills the outer arrow (scale 1) minus a
    margin around the inner one (the inner arrow scaled to 0.65), so the boundary between the
    classes follows the arrow's outline and is not convex.

    Args:
        x: points, shape ``(N, 2)``.

    Returns:
        Labels, shape ``(N,)``, in {-1, 0, 1}.
    """
    inner = _in_arrow(x, 0.5)
    outer = _in_arrow(x, 1.0) & ~_in_arrow(x, 0.65)
    return np.where(inner, 0, np.where(outer, 1, -1))


def toy2d(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples the two-arrows set of Fig. 2 by accept-reject sampling, balanced classes.

    Each class is drawn uniformly over its mask: uniform proposals on ``[-1, 1]^2`` are kept
    when they fall in the class's mask, until the class has ``n // 2`` (or ``n - n // 2``) points.

    Args:
        n: number of points.
        seed: seed of the sampler.

    Returns:
        ``x`` float32 ``(n, 2)`` and ``y`` int64 ``(n,)``, classes interleaved in random order.
    """
    rng = np.random.default_rng(seed)
    parts_x, parts_y = [], []
    for cls, count in ((0, n // 2), (1, n - n // 2)):
        kept: list[np.ndarray] = []
        have = 0
        while have < count:
            prop = rng.uniform(-1.0, 1.0, size=(4 * count + 64, 2))
            ok = prop[arrow_label(prop) == cls]
            kept.append(ok)
            have += len(ok)
        parts_x.append(np.concatenate(kept)[:count])
        parts_y.append(np.full(count, cls))
    x, y = np.concatenate(parts_x), np.concatenate(parts_y)
    order = rng.permutation(n)
    x_out = torch.from_numpy(x[order].astype(np.float32))
    return x_out, torch.from_numpy(y[order].astype(np.int64))
