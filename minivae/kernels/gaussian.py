"""The reparameterization z = μ + σ·ε with σ = exp(½ log σ²), and the closed-form KL divergence
KL(N(μ, σ²) ‖ N(0, 1)) = ½ (μ² + σ² - 1 - log σ²), summed over the latent dimensions of each row;
with their gradients. μ and log σ² are (batch, latent); ε and z are (samples, batch, latent).
Their references are the compositions they implement (``minivae.functions.gaussian_rsample`` and
``kl_to_standard_normal``).

Each kernel writes into the outputs it is given. The forward kernels also write out σ (resp. σ²),
which the backward kernels take instead of computing the exponential again. As in ``losses``, the
exponentials come from NumPy's vectorized loops (Numba's scalar ``exp`` is several times slower per
element); the compiled part does the rest in one pass.
"""
from __future__ import annotations

import numpy as np

from .backend import jit


@jit()
def _reparameterize_combine(mu, std, eps, z):
    for s in range(eps.shape[0]):
        for i in range(mu.shape[0]):
            for j in range(mu.shape[1]):
                z[s, i, j] = mu[i, j] + std[i, j] * eps[s, i, j]


def reparameterize(mu, logvar, eps, z, std):
    """std = exp(½ log σ²) and z[s] = μ + std·ε[s] for every sample s."""
    np.exp(np.multiply(logvar, 0.5, out=std), out=std)
    _reparameterize_combine(mu, std, eps, z)


@jit()
def reparameterize_backward(g, std, eps, grad_logvar):
    """Σ_s g[s]·∂z[s]/∂ log σ² = Σ_s ½ g[s]·ε[s]·σ (the gradient for μ, Σ_s g[s], needs no kernel)."""
    half = g.dtype.type(0.5)
    grad_logvar[:] = 0
    for s in range(g.shape[0]):
        for i in range(std.shape[0]):
            for j in range(std.shape[1]):
                grad_logvar[i, j] += half * g[s, i, j] * (eps[s, i, j] * std[i, j])


@jit()
def _gaussian_kl_combine(mu, logvar, var, kl_rows):
    half, one = mu.dtype.type(0.5), mu.dtype.type(1)
    for i in range(mu.shape[0]):
        total = mu.dtype.type(0)
        for j in range(mu.shape[1]):
            m = mu[i, j]
            total += m * m + var[i, j] - one - logvar[i, j]
        kl_rows[i] = half * total


def gaussian_kl_rows(mu, logvar, kl_rows, var):
    """var = exp(log σ²) and kl_rows[i] = ½ Σ_j (μ_ij² + var_ij - 1 - log σ²_ij)."""
    np.exp(logvar, out=var)
    _gaussian_kl_combine(mu, logvar, var, kl_rows)


@jit()
def gaussian_kl_backward(g_rows, mu, var, grad_mu, grad_logvar):
    """∂KL/∂μ · g = g·μ and ∂KL/∂ log σ² · g = ½ g·(σ² - 1), with g one value per row."""
    half, one = mu.dtype.type(0.5), mu.dtype.type(1)
    for i in range(mu.shape[0]):
        g = g_rows[i]
        for j in range(mu.shape[1]):
            grad_mu[i, j] = g * mu[i, j]
            grad_logvar[i, j] = (half * g) * (var[i, j] - one)
