"""The Adam update (Kingma & Ba, Algorithm 1), in place and in one pass over a parameter.

    g ← ∇ + λ·θ                          (L2 weight decay λ, when non-zero)
    m ← β₁ m + (1 - β₁) g
    v ← β₂ v + ((1 - β₂) g) g
    θ ← θ - α_t · m / (√v + ε̂),   α_t = lr·√(1 - β₂ᵗ) / (1 - β₁ᵗ),   ε̂ = ε·√(1 - β₂ᵗ)

This is θ - lr·m̂/(√v̂ + ε) with the bias-corrected moments m̂ = m/(1 - β₁ᵗ), v̂ = v/(1 - β₂ᵗ)
(multiply numerator and denominator by √(1 - β₂ᵗ)), in the order the paper's section 2 suggests:
the corrections fold into two scalars, leaving one square root and one division per element.
Its reference is the textbook form, ``minivae.optim.adam_update``, which calls this kernel for
contiguous arrays while the "numba" backend is on.
The second moment multiplies (1 - β₂)·g by g rather than (1 - β₂) by g²: g² overflows float32
for |g| > 1.8e19, where (1 - β₂)·g² itself is representable up to |g| ≈ 5.8e20, and an infinite
v would freeze the parameter for good.
"""
from __future__ import annotations

import math

import numpy as np

from .backend import jit


@jit()
def adam_step(param, grad, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, eps_hat, weight_decay):
    """One Adam step over flat arrays, the bias corrections folded into ``step_size`` and ``eps_hat``.

    1 - β is passed rounded from double precision: 1 - 0.999 computed in float32 is 1.3e-5 off.
    """
    for i in range(param.shape[0]):
        g = grad[i]
        if weight_decay:
            g = g + weight_decay * param[i]
        mi = beta1 * m[i] + one_minus_beta1 * g
        vi = beta2 * v[i] + (one_minus_beta2 * g) * g  # not g * g: that overflows first
        m[i] = mi
        v[i] = vi
        param[i] -= step_size * (mi / (math.sqrt(vi) + eps_hat))


def folded_scalars(dtype, step, lr, beta1, beta2, eps, weight_decay) -> tuple:
    """``adam_step``'s scalars in ``dtype``: β₁, 1 - β₁, β₂, 1 - β₂, α_t, ε̂ and the weight decay."""
    scalar, root_correction2 = np.dtype(dtype).type, math.sqrt(1 - beta2 ** step)
    return (scalar(beta1), scalar(1 - beta1), scalar(beta2), scalar(1 - beta2),
            scalar(lr * root_correction2 / (1 - beta1 ** step)), scalar(eps * root_correction2), scalar(weight_decay))
