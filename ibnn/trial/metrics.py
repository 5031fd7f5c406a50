"""Input-sensitivity measures: input-Jacobian norm (Eq. 34) and loss curvature (Eq. 61).

Both differentiate through the model with respect to its input, so through an IBNN layer they
use the implicit gradient. Models are put in eval mode, where samples do not interact, so a
batched gradient of a summed quantity gives every sample its own gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from ibnn.trial.attacks import input_gradient

__all__ = ["curvature", "jacobian_norm"]


def jacobian_norm(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of the input Jacobian of the logits, per sample.

    Eq. (34) compares ``||D f dx|| / ||dx||`` between IBNN and SM; for an isotropic random
    direction dx its mean square is ``||D f||_F^2 / dim(x)``, so the Frobenius norm measures the
    same sensitivity without picking directions. Computed with one vector-Jacobian product
    per class.

    Args:
        model: classifier with logits ``(N, K)``; put in eval mode here.
        x: inputs ``(N, ...)``.

    Returns:
        ``(N,)`` norms ``||d logits / d x||_F``.
    """
    model.eval()
    x = x.detach().requires_grad_(True)
    logits = model(x)
    sq = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    for k in range(logits.shape[1]):
        (g,) = torch.autograd.grad(logits[:, k].sum(), x, retain_graph=k + 1 < logits.shape[1])
        sq += g.flatten(1).pow(2).sum(1)
    return sq.sqrt().detach()


def curvature(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    h: float = 1e-3,
    draws: int = 4,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Loss curvature around each sample (Eq. 61, after Garg et al.), per sample.

    ``Curv(x) = mean_g ||grad L(x + h g) - grad L(x)||^2 / h^2`` with Rademacher vectors g:
    a finite-difference estimate of ``||H g||^2`` (H the input Hessian of the cross-entropy
    loss L), whose expectation over g is ``||H||_F^2``. The ``1 / h^2`` makes the value
    independent of h in the limit; Eq. 61 fixes it only up to a constant.

    Args:
        model: classifier; put in eval mode here.
        x: inputs ``(N, ...)`` (not clamped after the step).
        y: labels ``(N,)``.
        h: finite-difference step.
        draws: Rademacher vectors per sample.
        generator: CPU generator for the Rademacher vectors.

    Returns:
        ``(N,)`` curvature estimates.
    """
    if h <= 0 or draws < 1:
        raise ValueError(f"`h > 0` and `draws >= 1` must hold, but got h={h}, draws={draws}")
    model.eval()
    g0 = input_gradient(model, x, y)
    total = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    for _ in range(draws):
        sign = torch.randint(0, 2, x.shape, generator=generator).to(x.device, x.dtype) * 2 - 1
        gh = input_gradient(model, x + h * sign, y)
        total += (gh - g0).flatten(1).pow(2).sum(1) / h**2
    return total / draws
