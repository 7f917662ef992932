"""Binary cross-entropy with logits, summed per row, fused with its gradient.

ℓ(z, t) = softplus(z) - t·z = max(z, 0) - t·z + log1p(e^{-|z|}), finite for every finite z, and
∂ℓ/∂z = σ(z) - t with σ(z) = 1/(1 + e^{-|z|}) for z ≥ 0 and e^{-|z|}/(1 + e^{-|z|}) otherwise, so
that nothing overflows. e^{-|z|} is computed once and serves both. Its reference is the
composition it implements (``minivae.functions.bernoulli_log_prob``).

``logits`` is (rows, d) and ``targets`` (target_rows, d), with rows a multiple of target_rows:
row r of the logits is scored against target row r mod target_rows (S samples of a batch share
the batch's targets).

The exponential and log1p come from NumPy's vectorized (SIMD) loops: Numba calls the scalar C
library for them, several times slower per element. The compiled part does everything else in
one pass, and counts the targets outside [0, 1] on the way (no pass of its own).
"""
from __future__ import annotations

import numpy as np

from .backend import FAST_ARITHMETIC, jit


@jit(fastmath=FAST_ARITHMETIC)
def _bce_combine(logits, targets, e, log1p_e, loss_rows, grad, want_grad):
    """The rest of the pass, given e = e^{-|z|} and log1p(e): row sums of ℓ and (if ``want_grad``)
    σ(z) - t; returns the number of targets outside [0, 1] (or NaN)."""
    zero, one = logits.dtype.type(0), logits.dtype.type(1)
    outside = 0
    for i in range(logits.shape[0]):
        row = i % targets.shape[0]
        total = 0.0
        for j in range(logits.shape[1]):
            z, t, ej = logits[i, j], targets[row, j], e[i, j]
            if not (t >= zero and t <= one):
                outside += 1
            total += max(z, zero) - t * z + log1p_e[i, j]
            if want_grad:
                grad[i, j] = (one if z >= zero else ej) / (one + ej) - t
        loss_rows[i] = total
    return outside


def bce_with_logits_rows(logits, targets, loss_rows, grad=None) -> int:
    """loss_rows[i] = Σ_j ℓ(z_ij, t_ij) and grad = ∂ℓ/∂z = σ(z) - t, in one pass after e^{-|z|};
    ``grad=None`` (no gradient wanted, as in evaluation) writes no gradient.

    Returns how many targets lie outside [0, 1].
    """
    e = np.abs(logits)
    np.negative(e, out=e)
    np.exp(e, out=e)
    log1p_e = np.log1p(e)
    want_grad = grad is not None
    return _bce_combine(logits, targets, e, log1p_e, loss_rows, grad if want_grad else e, want_grad)
