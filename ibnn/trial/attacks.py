"""Adversarial attacks used by the trials: PGD (white-box or via a surrogate) and Pixle.

Both are written here, batched and seeded with a ``torch.Generator``, rather than taken from
torchattacks: its PGD draws the random start from the global RNG, and its Pixle works one
image at a time (two forwards per query) with NumPy's global RNG, which is far too slow
through an implicit layer. torchattacks' Pixle does run on 1-channel images; note also that its
``_perturb`` indexes destinations as (x, y) where the image is (row, col), which writes a
similarity-chosen pixel at the transposed position: :func:`pixle` reproduces that by default
(the paper's numbers come from it) and offers the literal version with ``transposed=False``.

Inputs are floats in ``bounds`` (``[0, 1]`` for images, no normalisation); models are put in
eval mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["input_gradient", "pgd", "pixle"]


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the summed cross-entropy with respect to the input.

    Through an IBNN layer this is the implicit gradient (the layer's backward solve).
    Samples do not interact in eval mode, so row n is the gradient of sample n's own loss.

    Args:
        model: classifier (used as is: call ``model.eval()`` first for per-sample gradients).
        x: inputs ``(N, ...)``.
        y: labels ``(N,)``.

    Returns:
        ``(N, ...)`` gradient, detached.
    """
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad.detach()


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    steps: int = 10,
    alpha: float | None = None,
    generator: torch.Generator | None = None,
    random_start: bool = True,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Projected gradient descent in the L-inf ball (Madry et al.), untargeted.

    Args:
        model: model whose gradient drives the attack (the target itself for white-box,
            or a surrogate such as ``ibnn.to_sm(target)``); put in eval mode here.
        x: clean inputs ``(N, ...)`` within ``bounds``.
        y: true labels ``(N,)``.
        eps: L-inf radius (0 returns a copy of ``x``).
        steps: gradient steps (the paper: 10).
        alpha: step size; default ``2.5 * eps / steps``.
        generator: CPU generator for the uniform random start.
        random_start: start from a uniform point of the ball.
        bounds: valid input range, enforced after every step.

    Returns:
        Adversarial inputs ``(N, ...)``, detached, with ``|x_adv - x| <= eps``.
    """
    if eps < 0:
        raise ValueError(f"`eps >= 0` must hold, but got eps={eps}")
    x = x.detach()
    if eps == 0:
        return x.clone()
    model.eval()
    lo, hi = bounds
    alpha = 2.5 * eps / steps if alpha is None else alpha
    adv = x.clone()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        adv = (adv + (2 * noise - 1) * eps).clamp(lo, hi)
    for _ in range(steps):
        grad = input_gradient(model, adv, y)
        adv = adv + alpha * grad.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(lo, hi)
    return adv.detach()


@torch.no_grad()
def _true_prob(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    logits = model(x)
    return logits.softmax(1).gather(1, y[:, None])[:, 0], logits.argmax(1) != y


@torch.no_grad()
def pixle(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    restarts: int = 10,
    iterations: int = 5,
    patch: int = 3,
    transposed: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pixle (Pomponi et al. 2022), black-box: rearranges pixels to lower the true-class prob.

    The paper's settings: ``restarts`` x ``iterations`` queries, square ``patch`` x ``patch``
    source patches, similarity-based destinations: each patch pixel of the clean image goes to
    the pixel of the current image most similar to it (other than its own position; exactly
    equal pixels score lowest). The reference implementation (torchattacks', which the paper
    ran) then writes it at the *transposed* position ``(col, row)`` of that pixel;
    ``transposed=True`` (default) reproduces this, so results compare with the paper's.
    ``transposed=False`` writes at the chosen pixel itself, which changes the image far less
    (on Fashion-MNIST it barely attacks at all). Within a restart every candidate perturbs the
    image the restart began with; a candidate is kept when it lowers the
    true-class probability below the best so far, and the next restart starts from the best
    candidate (or, if none improved yet, from the last one). A sample stops as soon as it is
    misclassified. All samples are attacked in parallel, one forward per query.

    Args:
        model: the classifier (only its outputs are used); put in eval mode here.
        x: clean images ``(N, C, H, W)`` in ``[0, 1]``.
        y: true labels ``(N,)``.
        restarts: number of restarts (the paper: 10).
        iterations: queries per restart (the paper: 5).
        patch: side of the source patch in pixels (the paper: 3).
        transposed: write at ``(col, row)`` like the reference implementation (square images).
        generator: CPU generator for the patch positions.

    Returns:
        Adversarial images ``(N, C, H, W)``: clean pixels copied to other positions (an L0
        perturbation; every value comes from the same clean image).
    """
    if x.dim() != 4:
        raise ValueError(f"pixle needs images (N, C, H, W), but got shape {tuple(x.shape)}")
    if transposed and x.shape[2] != x.shape[3]:
        raise ValueError(f"`transposed=True` needs square images, but got shape {tuple(x.shape)}")
    model.eval()
    start = x.clone()  # the image each restart perturbs; finally the adversarial image
    best = x.clone()  # best candidate so far
    has_best = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    best_p, done = _true_prob(model, x, y)  # already misclassified samples are left as they are
    for _ in range(restarts):
        attacking = ~done
        if not bool(attacking.any()):
            break
        last = start.clone()
        for _ in range(iterations):
            idx = (~done).nonzero()[:, 0]
            if len(idx) == 0:
                break
            cand = _pixle_candidate(x[idx], start[idx], patch, generator, transposed)
            p, wrong = _true_prob(model, cand, y[idx])
            better = p < best_p[idx]
            best_p[idx[better]] = p[better]
            keep = better | wrong
            best[idx[keep]] = cand[keep]
            has_best[idx[keep]] = True
            done[idx[wrong]] = True
            last[idx] = cand
        nxt = torch.where(has_best[:, None, None, None], best, last)
        start = torch.where(attacking[:, None, None, None], nxt, start)
    return start


def _pixle_candidate(
    source: torch.Tensor,
    current: torch.Tensor,
    patch: int,
    generator: torch.Generator | None,
    transposed: bool,
) -> torch.Tensor:
    """One Pixle query per sample: copy a ``patch`` of ``source`` into ``current``.

    The patch's top-left corner is ``(int(u (h - 1)), int(v (w - 1)))`` for uniform u, v, and
    the patch is clipped at the image border, as in the reference implementation.
    """
    n, c, h, w = source.shape
    uv = torch.rand(n, 2, generator=generator).to(source.device)
    top = (uv[:, 0] * (h - 1)).long()
    left = (uv[:, 1] * (w - 1)).long()
    rows = torch.arange(n, device=source.device)
    flat_src = source.reshape(n, c, h * w)
    flat_cur = current.reshape(n, c, h * w)
    cand = current.clone().reshape(n, c, h * w)
    for di in range(patch):
        for dj in range(patch):
            r, q = top + di, left + dj
            inside = (r < h) & (q < w)  # the patch is clipped at the border
            pos = r.clamp(max=h - 1) * w + q.clamp(max=w - 1)  # (n,) source pixel
            pixel = flat_src[rows, :, pos]  # (n, c)
            diff = (flat_cur - pixel[:, :, None]).abs().mean(1)  # (n, h*w)
            sim = 1.0 / (1.0 + diff)
            sim[sim == 1.0] = 0.0  # exactly equal pixels are not favoured
            sim[rows, pos] = -1.0  # the pixel's own position is never chosen
            dest = sim.argmax(1)  # (n,) most similar pixel, flat (row, col)
            if transposed:
                dest = (dest % w) * w + dest // w  # written at (col, row), see pixle()
            keep = rows[inside]
            cand[keep, :, dest[inside]] = pixel[inside]
    return cand.reshape(n, c, h, w)
