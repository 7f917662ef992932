"""Fused ops for the VAE's training step: each pass over the data is one kernel of ``minivae.kernels``.

They are ops like those of ``minivae/engine/ops.py``: a NumPy-level forward and a backward that
returns the gradients of all tensor arguments at once. Their forwards keep what the backward reuses
(``saves=True``), and their backwards call kernels on arrays, so they cannot be differentiated
again (``twice_differentiable=False``). Features are on the last axis.

- ``dense(x, W, b, relu=True) = max(x Wᵀ + b, 0)`` (``relu=False``: x Wᵀ + b): one BLAS product,
  then bias and ReLU in one in-place pass; backward: mask and bias gradient in one pass, then the
  two BLAS products.
- ``bce_with_logits_sum(z, t) = Σ_j softplus(z_j) - t_j·z_j`` over the last axis, i.e. −log p(t)
  under Bernoulli(σ(z)): the loss and its gradient σ(z) - t in one pass; the backward scales the
  saved gradient.
- ``reparameterize(μ, log σ², ε) = μ + exp(½ log σ²)·ε``, ε with an optional leading sample axis;
  σ is saved for the backward pass.
- ``gaussian_kl(μ, log σ²) = ½ Σ_j μ_j² + σ_j² - 1 - log σ_j²`` over the last axis, i.e.
  KL(N(μ, diag σ²) ‖ N(0, I)); σ² is saved, and the backward makes both gradients in one pass.
"""
from __future__ import annotations

import numpy as np

from ..engine.ops import primitive
from . import activations, gaussian, losses


def fused(forward):
    """An op whose forward saves for its backward, and whose backward runs kernels on arrays."""
    return primitive(forward, saves=True, twice_differentiable=False)


# ------------------------------------------------------------------------ dense layer
@fused
def dense(x, weight, bias, *, relu=False):
    """y = x Wᵀ + b, or max(x Wᵀ + b, 0) with ``relu``, for x (..., in), W (out, in), b (out,).

    One BLAS product into a new array, then the bias (and the ReLU) added in place in one pass.
    """
    if x.ndim == 0 or weight.ndim != 2 or x.shape[-1] != weight.shape[1] or bias.shape != (weight.shape[0],):
        raise ValueError(f"dense: x {x.shape}, weight {weight.shape} and bias {bias.shape}; expected (..., in), "
                         f"(out, in) and (out,)")
    out = np.matmul(x, weight.T)
    rows = out.reshape(-1, out.shape[-1])
    if relu:
        activations.bias_relu(rows, bias, rows)
    else:
        rows += bias
    return out, None


@dense.defvjp
def dense_vjp(ctx, g):
    """g masked by 1[y > 0] (with ``relu``) and its column sums in one pass, then the two products."""
    x, weight, bias = ctx.inputs
    g_rows = g.reshape(-1, g.shape[-1])
    grad_bias = np.empty(g.shape[-1], g.dtype)
    if ctx.relu:
        grad_pre = np.empty(g_rows.shape, g.dtype)
        activations.relu_backward(g_rows, ctx.ans.reshape(g_rows.shape), grad_pre, grad_bias)
    else:
        grad_pre = g_rows
        activations.column_sum(g_rows, grad_bias)
    grad_x = (grad_pre @ weight).reshape(x.shape) if ctx.needs_grad[0] else None
    grad_weight = grad_pre.T @ x.reshape(-1, x.shape[-1]) if ctx.needs_grad[1] else None
    return grad_x, grad_weight, grad_bias


# ------------------------------------------------------------------------ Bernoulli reconstruction loss
@fused
def bce_with_logits_sum(logits, targets):
    """Σ_j ℓ(z_j, t_j) over the last axis, ℓ(z, t) = softplus(z) - t·z; saves ∂ℓ/∂z = σ(z) - t.

    ``logits`` and ``targets`` broadcast together; targets shared by leading axes of the logits
    (samples of one batch) are not copied.
    """
    if targets.dtype != logits.dtype:
        raise TypeError(f"bce_with_logits_sum: targets of dtype {targets.dtype} for logits of dtype "
                        f"{logits.dtype}; convert them with .astype")
    shape = np.broadcast_shapes(logits.shape, targets.shape)
    if not shape:
        raise ValueError("bce_with_logits_sum: logits and targets need at least one axis, the one summed over")
    if targets.ndim == 0 or targets.shape != shape[-targets.ndim:]:
        targets = np.broadcast_to(targets, shape)
    d = shape[-1]
    loss, grad_logits = np.empty(shape[:-1], logits.dtype), np.empty(shape, logits.dtype)
    losses.bce_with_logits_rows(np.broadcast_to(logits, shape).reshape(-1, d), targets.reshape(-1, d),
                                loss.reshape(-1), grad_logits.reshape(-1, d))
    return loss, grad_logits


@bce_with_logits_sum.defvjp
def bce_with_logits_sum_vjp(ctx, g):
    z, t = ctx.inputs
    g = g[..., None]
    return g * ctx.saved, (g * -z if ctx.needs_grad[1] else None)


# ------------------------------------------------------------------------ Gaussian latent
def _check_gaussian(name: str, mu, logvar) -> None:
    if mu.ndim == 0 or logvar.shape != mu.shape:
        raise ValueError(f"{name}: mu {mu.shape} and logvar {logvar.shape} must have one shape, with at least "
                         f"one axis")


@fused
def reparameterize(mu, logvar, eps):
    """z = μ + exp(½ log σ²)·ε: draws of N(μ, σ²), differentiable in μ and log σ²; saves σ.

    ``eps`` has μ's shape, or one more leading axis of samples.
    """
    _check_gaussian("reparameterize", mu, logvar)
    if eps.shape[eps.ndim - mu.ndim:] != mu.shape or eps.ndim > mu.ndim + 1:
        raise ValueError(f"reparameterize: eps of shape {eps.shape} for mu of shape {mu.shape}; expected "
                         f"{mu.shape} or (samples, *{mu.shape})")
    d, samples = mu.shape[-1], eps.shape[0] if eps.ndim > mu.ndim else 1
    z, std = np.empty(eps.shape, eps.dtype), np.empty(mu.shape, mu.dtype)
    eps_3d = eps.reshape(samples, mu.size // d, d)
    gaussian.reparameterize(mu.reshape(-1, d), logvar.reshape(-1, d), eps_3d, z.reshape(eps_3d.shape),
                            std.reshape(-1, d))
    return z, std


@reparameterize.defvjp
def reparameterize_vjp(ctx, g):
    """∂/∂μ = g (summed over samples by the engine), ∂/∂ log σ² = Σ_s ½ g·ε·σ, ∂/∂ε = g·σ."""
    mu, logvar, eps = ctx.inputs
    std = ctx.saved
    grad_logvar = None
    if ctx.needs_grad[1]:
        d, samples = std.shape[-1], g.shape[0] if g.ndim > std.ndim else 1
        grad_logvar = np.empty(std.shape, std.dtype)
        shape_3d = (samples, std.size // d, d)
        gaussian.reparameterize_backward(g.reshape(shape_3d), std.reshape(-1, d), eps.reshape(shape_3d),
                                         grad_logvar.reshape(-1, d))
    return g, grad_logvar, (g * std if ctx.needs_grad[2] else None)


@fused
def gaussian_kl(mu, logvar):
    """KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_j μ_j² + σ_j² - 1 - log σ_j², over the last axis; saves σ²."""
    _check_gaussian("gaussian_kl", mu, logvar)
    d = mu.shape[-1]
    kl, var = np.empty(mu.shape[:-1], mu.dtype), np.empty(mu.shape, mu.dtype)
    gaussian.gaussian_kl_rows(mu.reshape(-1, d), logvar.reshape(-1, d), kl.reshape(-1), var.reshape(-1, d))
    return kl, var


@gaussian_kl.defvjp
def gaussian_kl_vjp(ctx, g):
    """(∂/∂μ, ∂/∂ log σ²) of Σ g·KL, both in one pass."""
    mu, logvar = ctx.inputs
    d = mu.shape[-1]
    grad_mu, grad_logvar = np.empty(mu.shape, mu.dtype), np.empty(mu.shape, mu.dtype)
    gaussian.gaussian_kl_backward(np.ascontiguousarray(g).reshape(-1), mu.reshape(-1, d), ctx.saved.reshape(-1, d),
                                  grad_mu.reshape(-1, d), grad_logvar.reshape(-1, d))
    return grad_mu, grad_logvar
