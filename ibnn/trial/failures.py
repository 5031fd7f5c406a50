"""Which exceptions a trial records as its own numerical failure, and which it lets go.

A trial ends itself ("solver_failed" for an IBNN, "diverged" for an SM model) only for a
genuinely numerical reason: the solver did not converge (``ibnn.nn`` reports that in its
statistics, never by raising, and ``Trial`` judges them), a loss turned non-finite, or a
linear-algebra routine met a singular system (``torch.linalg.LinAlgError``, e.g. in TorchDEQ's
Anderson and Broyden solvers) or floating-point trouble (``ArithmeticError``).

Everything else is an infrastructure failure and must reach the scheduler, which retries the
trial from its last checkpoint (``--max-failures``): out of memory (``torch.OutOfMemoryError``),
CUDA and other device errors (``torch.AcceleratorError`` and the plain ``RuntimeError`` older
torch raises for them), a lost node (the trial's process dies with it), a storage error. All of
those are ``RuntimeError``s or ``OSError``s, so a trial must never catch ``RuntimeError`` as a
whole: out-of-memory would then be recorded as a solver failure, never retried, and biased
against IBNN models, which need more memory.
"""

from __future__ import annotations

import torch

__all__ = ["NUMERICAL_FAILURES"]

# Exceptions that end a trial as solver_failed / diverged (not retried); all others propagate.
NUMERICAL_FAILURES: tuple[type[BaseException], ...] = (torch.linalg.LinAlgError, ArithmeticError)
