"""Fused implementations beneath the model's functions: each pass over the data is one kernel.

Each op here implements one function of ``minivae.functions`` — same arguments, same result — and
is registered beneath it (``Function.implement``), so that it runs while the "numba" backend is
on; the function's composition of primitives is its reference, and the property tests hold each
op to it. An op's forward keeps what its backward reuses (``saves=True``); its backward runs
kernels on arrays, and under ``create_graph`` differentiates the composition instead. Features are
on the last axis; leading axes are folded into rows.

- ``linear``: one BLAS product of the rows, then the bias added in place; ``linear_relu``: the
  same with bias and ReLU in one in-place pass, and in the backward the mask and the bias gradient
  in one pass. A ReLU applied to a fused linear layer's output is recorded as one ``linear_relu``
  node on the layer's inputs (the product is not computed again).
- ``bernoulli_log_prob``: the row sums of the cross-entropy and its gradient σ(z) − t in one pass.
- ``gaussian_rsample``: z = μ + σ·ε in one pass, σ saved for the backward.
- ``kl_to_standard_normal``: the KL per row in one pass, σ² saved; both gradients in one pass.
"""
from __future__ import annotations

import numpy as np

from .. import functions
from ..engine import Tensor, is_grad_enabled
from ..engine.ops import primitive
from . import activations, gaussian, losses


def fused(forward):
    """An op whose forward saves for its backward, and whose backward runs kernels on arrays."""
    return primitive(forward, saves=True, twice_differentiable=False)


def _same_shapes(*args, **kwargs) -> bool:
    shapes = {np.shape(a.data if isinstance(a, Tensor) else a) for a in args[:2]}
    return len(shapes) == 1


# ------------------------------------------------------------------------ linear layers
def _affine_rows(x, weight, bias, relu: bool):
    """x Wᵀ + b (max(·, 0) with ``relu``) as a (rows, out) array: one BLAS product into a new
    C-ordered array, then bias (and ReLU) in place."""
    if x.ndim == 0 or weight.ndim != 2 or x.shape[-1] != weight.shape[1] or bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: x {x.shape}, weight {weight.shape} and bias {bias.shape}; expected (..., in), "
                         f"(out, in) and (out,)")
    rows = np.matmul(x.reshape(-1, x.shape[-1]), weight.T)  # a fresh C-contiguous array, whatever x's layout
    if relu:
        activations.bias_relu(rows, bias, rows)
    else:
        rows += bias
    return rows


def _affine_vjp(ctx, g, relu: bool):
    """The three gradients; the weight's and the bias's go into ``ctx.out`` when the context has it (a pair of
    preallocated arrays or None each, as the captured step's contexts do; the eager walk's do not)."""
    x, weight, bias = ctx.inputs
    out_weight, out_bias = getattr(ctx, "out", None) or (None, None)
    g_rows = np.ascontiguousarray(g).reshape(-1, g.shape[-1])
    grad_bias = np.empty(g.shape[-1], g.dtype) if out_bias is None else out_bias
    if relu:
        grad_pre = np.empty(g_rows.shape, g.dtype)
        activations.relu_backward(g_rows, ctx.ans.reshape(g_rows.shape), grad_pre, grad_bias)
    else:
        grad_pre = g_rows
        activations.column_sum(g_rows, grad_bias)
    grad_x = (grad_pre @ weight).reshape(x.shape) if ctx.needs_grad[0] else None
    grad_weight = np.matmul(grad_pre.T, x.reshape(-1, x.shape[-1]), out=out_weight) if ctx.needs_grad[1] else None
    return grad_x, grad_weight, grad_bias


@fused
def linear(x, weight, bias):
    """x Wᵀ + b over the last axis (``functions.linear``)."""
    return _affine_rows(x, weight, bias, relu=False).reshape(*x.shape[:-1], weight.shape[0]), None


@linear.defvjp
def linear_vjp(ctx, g):
    return _affine_vjp(ctx, g, relu=False)


@fused
def linear_relu(x, weight, bias):
    """max(x Wᵀ + b, 0) over the last axis (``functions.linear_relu``)."""
    return _affine_rows(x, weight, bias, relu=True).reshape(*x.shape[:-1], weight.shape[0]), None


@linear_relu.defvjp
def linear_relu_vjp(ctx, g):
    return _affine_vjp(ctx, g, relu=True)


def relu_after_linear(x):
    """max(x, 0); when x is the output of a fused ``linear``, recorded as one ``linear_relu`` node on that
    layer's inputs, which the fused backward handles in one pass (x itself stays valid and unchanged)."""
    if not (isinstance(x, Tensor) and x.op is linear and is_grad_enabled()):
        return functions.relu.composite(x)
    return Tensor.from_op(np.maximum(x.data, 0), linear_relu, x.parents, {}, None)


functions.linear.implement(linear, when=lambda x, weight, bias=None: bias is not None)
functions.linear_relu.implement(linear_relu)
functions.relu.implement(relu_after_linear)


# ------------------------------------------------------------------------ Bernoulli log-likelihood
@fused
def bernoulli_log_prob(logits, value):
    """-Σ_j ℓ(z_j, t_j) over the last axis, ℓ the cross-entropy with logits (``functions.bernoulli_log_prob``);
    saves ∂ℓ/∂z = σ(z) - t. Targets shared by leading axes of the logits (samples of one batch) are not
    copied. Raises ValueError for targets outside [0, 1], found in the same pass."""
    if value.dtype != logits.dtype:
        raise TypeError(f"bernoulli_log_prob: value of dtype {value.dtype} for logits of dtype "
                        f"{logits.dtype}; convert it with .astype")
    shape = np.broadcast_shapes(logits.shape, value.shape)
    if not shape:
        raise ValueError("bernoulli_log_prob: logits and value need at least one axis, the one summed over")
    if value.ndim == 0 or value.shape != shape[-value.ndim:]:
        value = np.broadcast_to(value, shape)
    d = shape[-1]
    loss = np.empty(shape[:-1], logits.dtype)
    grad_logits = np.empty(shape, logits.dtype) if is_grad_enabled() else None  # none to save in evaluation
    outside = losses.bce_with_logits_rows(np.broadcast_to(logits, shape).reshape(-1, d), value.reshape(-1, d),
                                          loss.reshape(-1), None if grad_logits is None else grad_logits.reshape(-1, d))
    if outside:
        functions.check_probabilities("bernoulli_log_prob", value)  # names the range found
    np.negative(loss, out=loss)
    return loss, grad_logits


@bernoulli_log_prob.defvjp
def bernoulli_log_prob_vjp(ctx, g):
    """∂/∂z = -g·(σ(z) - t) from the saved gradient; ∂/∂t = g·z (0 where a term of weight 0 was dropped:
    t = 0 at z = -∞, t = 1 at z = +∞, as the composition)."""
    logits, value = ctx.inputs
    g = -g[..., None]
    grad_value = None
    if ctx.needs_grad[1]:
        z = np.broadcast_to(logits, ctx.saved.shape)
        dropped = ((value == 0) & (z == -np.inf)) | ((value == 1) & (z == np.inf))
        grad_value = g * -np.where(dropped, 0, z)
    return g * ctx.saved, grad_value


functions.bernoulli_log_prob.implement(bernoulli_log_prob)


# ------------------------------------------------------------------------ Gaussian latent
@fused
def gaussian_rsample(mu, logvar, eps):
    """z = μ + exp(½ log σ²)·ε (``functions.gaussian_rsample``); saves σ. ``eps`` has μ's shape, or one
    more leading axis of samples."""
    if mu.ndim == 0 or eps.shape[eps.ndim - mu.ndim:] != mu.shape or eps.ndim > mu.ndim + 1:
        raise ValueError(f"gaussian_rsample: eps of shape {eps.shape} for mu of shape {mu.shape}; expected "
                         f"{mu.shape} or (samples, *{mu.shape})")
    d, samples = mu.shape[-1], eps.shape[0] if eps.ndim > mu.ndim else 1
    z, std = np.empty(eps.shape, eps.dtype), np.empty(mu.shape, mu.dtype)
    eps_3d = eps.reshape(samples, mu.size // d, d)
    gaussian.reparameterize(mu.reshape(-1, d), logvar.reshape(-1, d), eps_3d, z.reshape(eps_3d.shape),
                            std.reshape(-1, d))
    return z, std


@gaussian_rsample.defvjp
def gaussian_rsample_vjp(ctx, g):
    """∂/∂μ = g (summed over samples by the engine), ∂/∂ log σ² = Σ_s ½ g·ε·σ, ∂/∂ε = g·σ."""
    mu, logvar, eps = ctx.inputs
    std = ctx.saved
    grad_logvar = None
    if ctx.needs_grad[1]:
        d, samples = std.shape[-1], g.shape[0] if g.ndim > std.ndim else 1
        grad_logvar = np.empty(std.shape, std.dtype)
        shape_3d = (samples, std.size // d, d)
        gaussian.reparameterize_backward(np.ascontiguousarray(g).reshape(shape_3d), std.reshape(-1, d),
                                         eps.reshape(shape_3d), grad_logvar.reshape(-1, d))
    return g, grad_logvar, (g * std if ctx.needs_grad[2] else None)


functions.gaussian_rsample.implement(gaussian_rsample, when=_same_shapes)


@fused
def kl_to_standard_normal(mu, logvar):
    """½ Σ_j μ_j² + σ_j² - 1 - log σ_j² over the last axis (``functions.kl_to_standard_normal``); saves σ²."""
    if mu.ndim == 0:
        raise ValueError("kl_to_standard_normal: mu and logvar need at least one axis, the event")
    d = mu.shape[-1]
    kl, var = np.empty(mu.shape[:-1], mu.dtype), np.empty(mu.shape, mu.dtype)
    gaussian.gaussian_kl_rows(mu.reshape(-1, d), logvar.reshape(-1, d), kl.reshape(-1), var.reshape(-1, d))
    return kl, var


@kl_to_standard_normal.defvjp
def kl_to_standard_normal_vjp(ctx, g):
    """(∂/∂μ, ∂/∂ log σ²) of Σ g·KL, both in one pass."""
    mu, logvar = ctx.inputs
    d = mu.shape[-1]
    grad_mu, grad_logvar = np.empty(mu.shape, mu.dtype), np.empty(mu.shape, mu.dtype)
    gaussian.gaussian_kl_backward(np.ascontiguousarray(g).reshape(-1), mu.reshape(-1, d),
                                  ctx.saved.reshape(-1, d), grad_mu.reshape(-1, d), grad_logvar.reshape(-1, d))
    return grad_mu, grad_logvar


functions.kl_to_standard_normal.implement(kl_to_standard_normal, when=_same_shapes)
