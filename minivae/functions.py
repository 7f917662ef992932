"""The model's functions, each defined once as a short composition of engine primitives.

A ``Function`` is the meaning of a model computation — the linear layer, the Bernoulli
log-likelihood, the reparameterized Gaussian draw, the KL divergence to N(0, I), the log-density
of a diagonal Gaussian — written with the ops of ``minivae/engine/ops.py``, so that its graph is
made of primitives a reader can follow, and its gradients (of any order) come from theirs. That
composition is the function's reference.

A function may also have a *fused implementation* beneath it: an op whose forward and backward
run compiled kernels (``minivae/kernels/fused.py``), registered with ``Function.implement`` and
used while the fast kernel backend is on (``minivae.kernels.use("numba")``, the default). The
property tests check every fused implementation against its composition. Differentiating a fused
node again (``create_graph``) differentiates the composition instead, so higher derivatives are
right on either backend.

Shapes: features on the last axis; every leading axis is a batch axis. Values in nats.
"""
from __future__ import annotations

import numpy as np

from .engine import Op, Tensor, exp, gradients, relu as relu_op, reshape, softplus, transpose, where
from .engine.ops import value
from .kernels import backend

LOG_2PI = float(np.log(2 * np.pi))


class Function:
    """A model function: a composition of primitives (its definition), optionally a fused op beneath."""

    def __init__(self, composite):
        self.composite = composite
        self.name = composite.__name__
        self.fused = self.fused_when = None
        self.__doc__ = composite.__doc__
        self.__wrapped__ = composite

    def implement(self, op, when=None):
        """Register ``op`` as the fused implementation, used for calls where ``when(*args, **kwargs)`` holds.

        ``op`` takes the composite's arguments: an engine ``Op`` (its backward gains a fallback:
        run on Tensors under ``create_graph``, it differentiates the composite instead of calling
        kernels on arrays), or a plain function that builds such ops' nodes.
        """
        self.fused, self.fused_when = op, when
        if not isinstance(op, Op):
            return op
        kernel_vjp, composite = op.vjp, self.composite

        def vjp(ctx, g):
            if not isinstance(g, Tensor):
                return kernel_vjp(ctx, g)
            # Each argument position gets an alias of its own (an identity node on it), so that the gradient
            # of one position never includes a path through another (the same tensor twice, or x and 2x).
            aliases = [reshape(x, shape=x.shape) if needed else x for x, needed in zip(ctx.inputs, ctx.needs_grad)]
            wanted = [a for a, needed in zip(aliases, ctx.needs_grad) if needed]
            out = composite(*aliases, **ctx.static)  # g seeds the walk as a Tensor: the result depends on it
            grads = iter(gradients(out, wanted, grad_output=g, create_graph=True))
            return tuple(next(grads) if needed else None for needed in ctx.needs_grad)
        op.vjp, op.twice_differentiable, op.function = vjp, True, self
        return op

    def __call__(self, *args, **kwargs):
        if self.fused is not None and backend.active() == "numba" and (
                self.fused_when is None or self.fused_when(*args, **kwargs)):
            return self.fused(*args, **kwargs)
        return self.composite(*args, **kwargs)

    def __repr__(self) -> str:
        fused = f", fused={self.fused.name}" if self.fused is not None else ""
        return f"<function {self.name}{fused}>"


def function(composite) -> Function:
    """Decorator: a composite definition becomes a ``Function`` that fused implementations can join."""
    return Function(composite)


# ------------------------------------------------------------------------ layers
@function
def linear(x, weight, bias=None):
    """y = x Wᵀ + b over the last axis: x (..., in), W (out, in), b (out,) or None → y (..., out).

    All leading axes are folded into one 2-D product (one BLAS call, not a batch of small ones).
    Raises ValueError when the shapes do not fit.
    """
    x_shape, w_shape = np.shape(value(x)), np.shape(value(weight))
    if len(x_shape) == 0 or len(w_shape) != 2 or x_shape[-1] != w_shape[1] or (
            bias is not None and np.shape(value(bias)) != w_shape[:1]):
        raise ValueError(f"linear: x {x_shape}, weight {w_shape} and bias "
                         f"{None if bias is None else np.shape(value(bias))}; expected (..., in), (out, in) and "
                         f"(out,)")
    rows = x if len(x_shape) == 2 else x.reshape(-1, x_shape[-1])
    y = rows @ transpose(weight)
    if bias is not None:
        y = y + bias
    return y if len(x_shape) == 2 else y.reshape(*x_shape[:-1], w_shape[0])


@function
def linear_relu(x, weight, bias):
    """max(x Wᵀ + b, 0): a linear layer and its ReLU (shapes as ``linear``)."""
    return relu_op(linear(x, weight, bias))


@function
def relu(x):
    """max(x, 0). Beneath it, a ReLU of a fused linear layer's output joins that layer (``linear_relu``)."""
    return relu_op(x)


# ------------------------------------------------------------------------ likelihoods
REDUCTIONS = ("none", "sum", "mean")


@function
def binary_cross_entropy_with_logits(logits, targets, reduction="mean"):
    """ℓ(z, t) = −[t log σ(z) + (1 − t) log(1 − σ(z))] = t·softplus(−z) + (1 − t)·softplus(z), in nats.

    Both terms are non-negative (nothing cancels), and a term whose weight t or 1 − t is exactly 0
    counts 0, also where its softplus is infinite: ℓ(+∞, 1) = ℓ(−∞, 0) = 0, ℓ(±∞, ½) = ∞ (as PyTorch).
    ∂ℓ/∂z = σ(z) − t everywhere, ±∞ included; ∂ℓ/∂t = −z, except at those two points, where the
    dropped term contributes 0. ``logits`` and ``targets`` broadcast together; ``reduction`` is
    "none", "sum" or "mean".
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"binary_cross_entropy_with_logits: reduction must be one of {sorted(REDUCTIONS)}, "
                         f"got {reduction!r}")
    try:
        np.broadcast_shapes(np.shape(value(logits)), np.shape(value(targets)))
    except ValueError:
        raise ValueError(f"binary_cross_entropy_with_logits: cannot apply to shapes {np.shape(value(logits))}, "
                         f"{np.shape(value(targets))}: they do not broadcast together") from None
    z, t = value(logits), value(targets)
    drop_negative, drop_positive = (t == 0) & (z == -np.inf), (t == 1) & (z == np.inf)  # 0·∞ there
    loss = (where(drop_negative, 0, targets * softplus(-where(drop_negative, 0, logits)))
            + where(drop_positive, 0, (1 - targets) * softplus(where(drop_positive, 0, logits))))
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()


@function
def bernoulli_log_prob(logits, value):
    """log p(value) under independent Bernoulli(σ(logits)), summed over the last axis, in nats.

    = −Σ_j ℓ(z_j, t_j) with ℓ the binary cross-entropy with logits. ``value`` in [0, 1] (a grey
    level is a soft target) broadcasts against ``logits``: logits (S, batch, d) score value
    (batch, d); the result has the broadcast shape without its last axis. Raises ValueError for a
    value outside [0, 1] (the fused implementation finds it within its own pass).
    """
    check_probabilities("bernoulli_log_prob", value)
    return -binary_cross_entropy_with_logits(logits, value, reduction="none").sum(axis=-1)


def check_probabilities(owner: str, value) -> None:
    """A ValueError naming ``owner`` unless every element of ``value`` lies in [0, 1]."""
    array = np.asarray(value.data if isinstance(value, Tensor) else value)
    if array.size and not (array.min() >= 0 and array.max() <= 1):  # NaN fails too
        raise ValueError(f"{owner}: value must hold probabilities in [0, 1], got values in [{array.min()}, "
                         f"{array.max()}] (8-bit images: divide by 255)")


# ------------------------------------------------------------------------ Gaussians
@function
def gaussian_rsample(mu, logvar, eps):
    """z = μ + exp(½ log σ²)·ε: a reparameterized draw of N(μ, σ²) (Kingma & Welling, §2.4).

    Differentiable in μ and logvar; ``eps`` ~ N(0, I) has μ's shape or one more leading axis of
    samples.
    """
    return mu + exp(0.5 * logvar) * eps


@function
def kl_to_standard_normal(mu, logvar):
    """KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²) over the last axis, in nats
    (Kingma & Welling, appendix B)."""
    return 0.5 * (mu * mu + exp(logvar) - 1.0 - logvar).sum(axis=-1)


@function
def kl_diagonal_gaussians(mu, logvar, other_mu, other_logvar):
    """KL(N(μ, σ²) ‖ N(m, s²)) = ½ Σ_j [log s_j² − log σ_j² + (σ_j² + (μ_j − m_j)²)/s_j² − 1], over the
    last axis, in nats."""
    diff = mu - other_mu
    return 0.5 * (other_logvar - logvar + (exp(logvar) + diff * diff) * exp(-other_logvar) - 1.0).sum(axis=-1)


@function
def gaussian_log_prob(x, mu, logvar):
    """log N(x; μ, diag σ²) = −½ Σ_j [log 2π + log σ_j² + ((x_j − μ_j)/σ_j)²] over the last axis, in nats.

    The standardized residual (x − μ)/σ, σ = exp(½ log σ²), is formed before squaring: at x = μ it
    is 0 for any σ > 0, where (x − μ)²·exp(−log σ²) would be 0·∞ once exp(−log σ²) overflows
    (log σ² < −88 in float32).
    """
    standardized = (x - mu) / exp(0.5 * logvar)
    return -0.5 * (LOG_2PI + logvar + standardized * standardized).sum(axis=-1)

