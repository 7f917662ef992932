"""Fused ops for the VAE's training step: each pass over the data is one kernel of ``minivae.kernels``.

They are ops like those of ``ops.py`` (a NumPy-level forward, one VJP per tensor argument), with one
extension: a ``SavingOp`` keeps what its forward computed for its VJPs, and lets the VJPs of one
node share work within a backward pass. Features are on the last axis.

- ``dense(x, W, b, relu=True) = max(x Wᵀ + b, 0)`` (``relu=False``: x Wᵀ + b): one BLAS product,
  then bias and ReLU in one in-place pass; backward: mask and bias gradient in one pass, then the
  two BLAS products.
- ``bce_with_logits_sum(z, t) = Σ_j softplus(z_j) - t_j·z_j`` over the last axis, i.e. −log p(t)
  under Bernoulli(σ(z)): the loss and its gradient σ(z) - t in one pass; the VJP scales the saved
  gradient.
- ``reparameterize(μ, log σ², ε) = μ + exp(½ log σ²)·ε``, ε with an optional leading sample axis;
  σ is saved for the backward pass.
- ``gaussian_kl(μ, log σ²) = ½ Σ_j μ_j² + σ_j² - 1 - log σ_j²`` over the last axis, i.e.
  KL(N(μ, diag σ²) ‖ N(0, I)); σ² is saved, and the backward pass makes both gradients in one pass.

The reparameterization and the KL share their inputs but are two ops: an op has one output.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .. import kernels
from .ops import Op


class SavingOp(Op):
    """An op whose forward keeps intermediate results for its VJPs.

    The forward takes a keyword-only ``saved``: each call passes a fresh namespace, which is kept
    with the node's static parameters, so every VJP of that node receives the same one as
    ``saved=``. The forward leaves in it what the VJPs reuse (such as a loss gradient computed in
    the same pass as the loss); ``shared`` lets the VJPs of one node compute a common part once
    per backward pass.
    """

    def __call__(self, *args, **params):
        return super().__call__(*args, saved=SimpleNamespace(), **params)

    def vjps_done(self, params: dict) -> None:
        """Forget what ``shared`` kept for this backward pass: the next one recomputes it."""
        params["saved"].__dict__.pop("for_gradient", None)
        params["saved"].__dict__.pop("result", None)


def shared(saved: SimpleNamespace, g: np.ndarray, compute):
    """``compute()`` once per backward pass through this node, identified by its output gradient ``g``.

    The first VJP to ask computes and keeps the result with ``g``; its sibling VJPs, called with
    that same ``g``, reuse it; ``SavingOp.vjps_done`` forgets it when they have all run.
    """
    if getattr(saved, "for_gradient", None) is not g:
        saved.for_gradient, saved.result = g, compute()
    return saved.result


# ------------------------------------------------------------------------ dense layer
@SavingOp
def dense(x, weight, bias, *, relu=False, saved):
    """y = x Wᵀ + b, or max(x Wᵀ + b, 0) with ``relu``, for x (..., in), W (out, in), b (out,).

    One BLAS product into a new array, then the bias (and the ReLU) added in place in one pass.
    """
    if x.ndim == 0 or weight.ndim != 2 or x.shape[-1] != weight.shape[1] or bias.shape != (weight.shape[0],):
        raise ValueError(f"dense: x {x.shape}, weight {weight.shape} and bias {bias.shape}; expected (..., in), "
                         f"(out, in) and (out,)")
    out = np.matmul(x, weight.T)
    rows = out.reshape(-1, out.shape[-1])
    if relu:
        kernels.bias_relu(rows, bias, rows)
    else:
        rows += bias
    return out


def _dense_grads(g, ans, relu, saved):
    """(∂/∂(x Wᵀ + b), ∂/∂b) as (rows, out) and (out,) arrays: g masked by 1[y > 0] with ``relu``, and its
    column sums; once per backward pass, shared by the three VJPs."""
    def compute():
        g_rows = g.reshape(-1, g.shape[-1])
        grad_bias = np.empty(g.shape[-1], g.dtype)
        if not relu:
            kernels.column_sum(g_rows, grad_bias)
            return g_rows, grad_bias
        grad_pre = np.empty(g_rows.shape, g.dtype)
        kernels.relu_backward(g_rows, ans.reshape(g_rows.shape), grad_pre, grad_bias)
        return grad_pre, grad_bias
    return shared(saved, g, compute)


dense.defvjp(lambda g, ans, x, w, b, relu, saved: (_dense_grads(g, ans, relu, saved)[0] @ w).reshape(x.shape),
             lambda g, ans, x, w, b, relu, saved: _dense_grads(g, ans, relu, saved)[0].T @ x.reshape(-1, x.shape[-1]),
             lambda g, ans, x, w, b, relu, saved: _dense_grads(g, ans, relu, saved)[1])


# ------------------------------------------------------------------------ Bernoulli reconstruction loss
@SavingOp
def bce_with_logits_sum(logits, targets, *, saved):
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
    loss, saved.grad_logits = np.empty(shape[:-1], logits.dtype), np.empty(shape, logits.dtype)
    kernels.bce_with_logits_rows(np.broadcast_to(logits, shape).reshape(-1, d), targets.reshape(-1, d),
                                 loss.reshape(-1), saved.grad_logits.reshape(-1, d))
    return loss


bce_with_logits_sum.defvjp(lambda g, ans, z, t, saved: g[..., None] * saved.grad_logits,
                           lambda g, ans, z, t, saved: g[..., None] * -z)


# ------------------------------------------------------------------------ Gaussian latent
def _check_gaussian(name: str, mu, logvar) -> None:
    if mu.ndim == 0 or logvar.shape != mu.shape:
        raise ValueError(f"{name}: mu {mu.shape} and logvar {logvar.shape} must have one shape, with at least "
                         f"one axis")


@SavingOp
def reparameterize(mu, logvar, eps, *, saved):
    """z = μ + exp(½ log σ²)·ε: draws of N(μ, σ²), differentiable in μ and log σ²; saves σ.

    ``eps`` has μ's shape, or one more leading axis of samples.
    """
    _check_gaussian("reparameterize", mu, logvar)
    if eps.shape[eps.ndim - mu.ndim:] != mu.shape or eps.ndim > mu.ndim + 1:
        raise ValueError(f"reparameterize: eps of shape {eps.shape} for mu of shape {mu.shape}; expected "
                         f"{mu.shape} or (samples, *{mu.shape})")
    d, samples = mu.shape[-1], eps.shape[0] if eps.ndim > mu.ndim else 1
    z, saved.std = np.empty(eps.shape, eps.dtype), np.empty(mu.shape, mu.dtype)
    eps_3d = eps.reshape(samples, mu.size // d, d)
    kernels.reparameterize(mu.reshape(-1, d), logvar.reshape(-1, d), eps_3d, z.reshape(eps_3d.shape),
                           saved.std.reshape(-1, d))
    return z


def _reparameterize_logvar_grad(g, eps, std):
    """Σ over the samples of ½ g·ε·σ, in log σ²'s shape."""
    d, samples = std.shape[-1], g.shape[0] if g.ndim > std.ndim else 1
    grad = np.empty(std.shape, std.dtype)
    shape_3d = (samples, std.size // d, d)
    kernels.reparameterize_backward(g.reshape(shape_3d), std.reshape(-1, d), eps.reshape(shape_3d),
                                    grad.reshape(-1, d))
    return grad


reparameterize.defvjp(lambda g, ans, mu, logvar, eps, saved: g,
                      lambda g, ans, mu, logvar, eps, saved: _reparameterize_logvar_grad(g, eps, saved.std),
                      lambda g, ans, mu, logvar, eps, saved: g * saved.std)


@SavingOp
def gaussian_kl(mu, logvar, *, saved):
    """KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_j μ_j² + σ_j² - 1 - log σ_j², over the last axis; saves σ²."""
    _check_gaussian("gaussian_kl", mu, logvar)
    d = mu.shape[-1]
    kl, saved.var = np.empty(mu.shape[:-1], mu.dtype), np.empty(mu.shape, mu.dtype)
    kernels.gaussian_kl_rows(mu.reshape(-1, d), logvar.reshape(-1, d), kl.reshape(-1), saved.var.reshape(-1, d))
    return kl


def _kl_grads(g, mu, saved):
    """(∂/∂μ, ∂/∂ log σ²) of Σ g·KL, both in one pass, once per backward pass."""
    def compute():
        d = mu.shape[-1]
        grad_mu, grad_logvar = np.empty(mu.shape, mu.dtype), np.empty(mu.shape, mu.dtype)
        kernels.gaussian_kl_backward(g.reshape(-1), mu.reshape(-1, d), saved.var.reshape(-1, d),
                                     grad_mu.reshape(-1, d), grad_logvar.reshape(-1, d))
        return grad_mu, grad_logvar
    return shared(saved, g, compute)


gaussian_kl.defvjp(lambda g, ans, mu, logvar, saved: _kl_grads(g, mu, saved)[0],
                   lambda g, ans, mu, logvar, saved: _kl_grads(g, mu, saved)[1])
