"""The Adam update (Kingma & Ba, Algorithm 1), in place and in one pass over a parameter.

    g ← ∇ + λ·θ                          (L2 weight decay λ, when non-zero)
    m ← β₁ m + (1 - β₁) g
    v ← β₂ v + ((1 - β₂) g) g
    θ ← θ - α_t · m / (√v + ε̂),   α_t = lr·√(1 - β₂ᵗ) / (1 - β₁ᵗ),   ε̂ = ε·√(1 - β₂ᵗ)

This is θ - lr·m̂/(√v̂ + ε) with the bias-corrected moments m̂ = m/(1 - β₁ᵗ), v̂ = v/(1 - β₂ᵗ)
(multiply numerator and denominator by √(1 - β₂ᵗ)), in the order the paper's section 2 suggests:
the corrections fold into two scalars, leaving one square root and one division per element.
The second moment multiplies (1 - β₂)·g by g rather than (1 - β₂) by g²: g² overflows float32
for |g| > 1.8e19, where (1 - β₂)·g² itself is representable up to |g| ≈ 5.8e20, and an infinite
v would freeze the parameter for good.
"""
from __future__ import annotations

import math

import numpy as np

from .backend import jit, kernel


def _adam_step_numpy(param, grad, m, v, beta1, beta2, step_size, eps_hat, weight_decay):
    if weight_decay:
        grad = grad + weight_decay * param
    m *= beta1
    m += (1 - beta1) * grad
    v *= beta2
    v += ((1 - beta2) * grad) * grad  # not (grad * grad): that overflows first
    param -= step_size * (m / (np.sqrt(v) + eps_hat))


@kernel(reference=_adam_step_numpy)
@jit()
def adam_step(param, grad, m, v, beta1, beta2, step_size, eps_hat, weight_decay):
    """One Adam step over flat arrays, the bias corrections folded into ``step_size`` and ``eps_hat``."""
    one = param.dtype.type(1)
    for i in range(param.shape[0]):
        g = grad[i]
        if weight_decay:
            g = g + weight_decay * param[i]
        mi = beta1 * m[i] + (one - beta1) * g
        vi = beta2 * v[i] + ((one - beta2) * g) * g  # not g * g: that overflows first
        m[i] = mi
        v[i] = vi
        param[i] -= step_size * (mi / (math.sqrt(vi) + eps_hat))


def adam_update(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay=0.0) -> None:
    """Update ``param`` and its moments ``m``, ``v`` in place by Adam step number ``step`` (from 1).

    The four arrays share one shape and one float dtype; the scalars are cast to that dtype, so a
    float32 parameter is updated in float32 arithmetic. C-contiguous arrays go through the kernel
    as flat views; others (rare) through the NumPy reference, which works on any layout.
    """
    if not (param.shape == grad.shape == m.shape == v.shape and param.dtype == grad.dtype == m.dtype == v.dtype):
        described = ", ".join(f"{name} {a.shape} {a.dtype}" for name, a in zip(("param", "grad", "m", "v"),
                                                                               (param, grad, m, v)))
        raise ValueError(f"adam_update: param, grad, m and v need one shape and dtype, got {described}")
    if param.dtype.kind != "f":
        raise TypeError(f"adam_update: param must be floating-point, got dtype {param.dtype}")
    if step < 1:
        raise ValueError(f"adam_update: step counts from 1, got {step}")
    scalar, root_correction2 = param.dtype.type, math.sqrt(1 - beta2 ** step)
    scalars = (scalar(beta1), scalar(beta2), scalar(lr * root_correction2 / (1 - beta1 ** step)),
               scalar(eps * root_correction2), scalar(weight_decay))
    if param.flags.c_contiguous and grad.flags.c_contiguous and m.flags.c_contiguous and v.flags.c_contiguous:
        adam_step(param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1), *scalars)
    else:
        adam_step.numpy(param, grad, m, v, *scalars)
