"""Fused implementations beneath the model's functions: each pass over the data is one kernel.

Each op here implements one function of ``minivae.functions`` — same arguments, same result — and
is registered beneath it where it is defined (``@implements(function)``), so that it runs while the
"numba" backend is on and the arguments fit the kernels (floating arrays of one dtype, a non-empty
last axis; anything else runs the composition); the function's composition of primitives is its
reference, and the property tests hold each op to it. An op's forward keeps what its backward
reuses; its backward runs kernels on arrays, and under ``create_graph`` differentiates the
composition instead (``FusedOp``). Features are on the last axis; leading axes are folded into rows.

- ``linear``: one BLAS product of the rows, then the bias added in place; ``linear_relu``: the
  same with bias and ReLU in one in-place pass, and in the backward the mask and the bias gradient
  in one pass (a model asks for it by calling ``functions.linear_relu``, as ``nn.MLP`` does).
- ``bernoulli_log_prob``: the row sums of the cross-entropy and its gradient σ(z) − t in one pass.
- ``gaussian_rsample``: z = μ + σ·ε in one pass, σ saved for the backward.
- ``kl_to_standard_normal``: the KL per row in one pass, σ² saved; both gradients in one pass.
"""
from __future__ import annotations

import numpy as np

from .. import functions
from ..engine import Op, Tensor, is_grad_enabled
from . import activations, gaussian, losses
from .backend import DTYPES


class FusedOp(Op):
    """An op implementing a model function with kernels: its forward saves for its backward, its backward runs
    kernels on arrays and, differentiated again (``create_graph``, on Tensors), differentiates the
    function's composition instead, so it is twice differentiable. ``writes_out``: the positions of the
    arguments whose gradients the backward writes into ``ctx.out`` when the caller gives arrays there."""

    def __init__(self, forward, function, writes_out=()):
        super().__init__(forward, saves=True, twice_differentiable=True)
        self.function, self.writes_out = function, tuple(writes_out)

    def backward(self, ctx, g) -> tuple:
        if isinstance(g, Tensor):
            return self.function.composite_vjp(ctx, g)
        return super().backward(ctx, g)


def implements(function, when=None, writes_out=()):
    """Decorator: ``forward`` becomes a ``FusedOp`` implementing ``function`` (``minivae.functions``), registered
    beneath it for the calls where ``when`` holds and every tensor argument fits the kernels."""
    def make(forward):
        op = FusedOp(forward, function, writes_out)
        function.implement(op, when=lambda *args, **kwargs: _fits_kernels(*args) and (when is None or when(
            *args, **kwargs)))
        return op
    return make


def _fits_kernels(*args) -> bool:
    """Whether every argument is a tensor or array of one dtype, native float32 or float64, with a non-empty last
    axis: what the kernels take (other arguments, such as boolean targets, float16 or byte-swapped values or a
    zero-width feature axis, run the composition, which accepts them or raises its own error)."""
    dtypes = set()
    for a in args:
        data = a.data if isinstance(a, Tensor) else a
        if not isinstance(data, np.ndarray) or data.ndim == 0 or data.shape[-1] == 0 or data.dtype not in DTYPES:
            return False
        dtypes.add(data.dtype)
    return len(dtypes) == 1


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
        activations.bias_add(rows, bias, rows)
    return rows


def _affine_vjp(ctx, g, relu: bool):
    """The three gradients; the weight's and the bias's go into ``ctx.out[1]`` and ``ctx.out[2]`` where those are
    arrays (``writes_out``: the captured step gives its flat gradient buffer's views; the walk gives none)."""
    x, weight, bias = ctx.inputs
    _, out_weight, out_bias = ctx.out
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


@implements(functions.linear, when=lambda x, weight, bias=None: bias is not None, writes_out=(1, 2))
def linear(x, weight, bias):
    """x Wᵀ + b over the last axis (``functions.linear``)."""
    return _affine_rows(x, weight, bias, relu=False).reshape(*x.shape[:-1], weight.shape[0]), None


@linear.defvjp
def linear_vjp(ctx, g):
    return _affine_vjp(ctx, g, relu=False)


@implements(functions.linear_relu, writes_out=(1, 2))
def linear_relu(x, weight, bias):
    """max(x Wᵀ + b, 0) over the last axis (``functions.linear_relu``)."""
    return _affine_rows(x, weight, bias, relu=True).reshape(*x.shape[:-1], weight.shape[0]), None


@linear_relu.defvjp
def linear_relu_vjp(ctx, g):
    return _affine_vjp(ctx, g, relu=True)


# ------------------------------------------------------------------------ Bernoulli log-likelihood
@implements(functions.bernoulli_log_prob)
def bernoulli_log_prob(logits, targets):
    """-Σ_j ℓ(z_j, t_j) over the last axis, ℓ the cross-entropy with logits (``functions.bernoulli_log_prob``);
    saves ∂ℓ/∂z = σ(z) - t. Targets shared by leading axes of the logits (samples of one batch) are not
    copied. Raises ValueError for targets outside [0, 1], found in the same pass."""
    if targets.dtype != logits.dtype:
        raise TypeError(f"bernoulli_log_prob: targets of dtype {targets.dtype} for logits of dtype "
                        f"{logits.dtype}; convert it with .astype")
    shape = np.broadcast_shapes(logits.shape, targets.shape)
    if not shape:
        raise ValueError("bernoulli_log_prob: logits and targets need at least one axis, the one summed over")
    if targets.ndim == 0 or targets.shape != shape[-targets.ndim:]:
        targets = np.broadcast_to(targets, shape)
    d = shape[-1]
    loss = np.empty(shape[:-1], logits.dtype)
    grad_logits = np.empty(shape, logits.dtype) if is_grad_enabled() else None  # none to save in evaluation
    outside = losses.bce_with_logits_rows(np.broadcast_to(logits, shape).reshape(-1, d), targets.reshape(-1, d),
                                          loss.reshape(-1), None if grad_logits is None else grad_logits.reshape(-1, d))
    if outside:
        functions.check_probabilities("bernoulli_log_prob", targets)  # names the range found
    np.negative(loss, out=loss)
    return loss, grad_logits


@bernoulli_log_prob.defvjp
def bernoulli_log_prob_vjp(ctx, g):
    """∂/∂z = -g·(σ(z) - t) from the saved gradient; ∂/∂t = g·z (0 where a term of weight 0 was dropped:
    t = 0 at z = -∞, t = 1 at z = +∞, as the composition)."""
    logits, targets = ctx.inputs
    g = -g[..., None]
    grad_targets = None
    if ctx.needs_grad[1]:
        z = np.broadcast_to(logits, ctx.saved.shape)
        dropped = ((targets == 0) & (z == -np.inf)) | ((targets == 1) & (z == np.inf))
        grad_targets = g * -np.where(dropped, 0, z)
    saved = ctx.saved
    if g.dtype != saved.dtype:
        return g * saved, grad_targets  # NumPy's promotion, as the composition's
    grad_logits, d = np.empty(saved.shape, saved.dtype), saved.shape[-1]
    losses.scale_rows(np.ascontiguousarray(np.broadcast_to(g, (*saved.shape[:-1], 1))).reshape(-1),
                      saved.reshape(-1, d), grad_logits.reshape(-1, d))
    return grad_logits, grad_targets


# ------------------------------------------------------------------------ Gaussian latent
@implements(functions.gaussian_rsample, when=_same_shapes)
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



@implements(functions.kl_to_standard_normal, when=_same_shapes)
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

