"""The model's functions, each defined once as a short composition of engine primitives.

A ``ModelFunction`` is the meaning of a model computation — the linear layer, the Bernoulli
log-likelihood, the reparameterized Gaussian draw, the KL divergence to N(0, I), the log-density
of a diagonal Gaussian — written with the ops of ``minivae/engine/ops.py``, so that its graph is
made of primitives a reader can follow, and its gradients (of any order) come from theirs. That
composition is the function's reference.

A function may also have a *fused implementation* beneath it: an op whose forward and backward
run compiled kernels (``minivae/kernels/fused.py``), registered with ``ModelFunction.implement`` and
used while the fast kernel backend is on (``minivae.kernels.use("numba")``, the default) and the
arguments fit its kernels. The property tests check every fused implementation against its
composition. The fused ops declare (where they are defined) that, differentiated again
(``create_graph``), they differentiate the composition (``composite_vjp``), so higher derivatives
are right on either backend. A fused implementation never hides a tensor a user can hold: it
replaces exactly one call of its function.

Shapes: features on the last axis; every leading axis is a batch axis. Values in nats.
"""
from __future__ import annotations

import numpy as np

from .engine import Tensor, exp, gradients, relu, reshape, softplus, transpose, where
from .engine.ops import value
from .kernels import backend

LOG_2PI = float(np.log(2 * np.pi))


class ModelFunction:
    """A model function: a composition of primitives (its definition), optionally a fused op beneath.

    Called, it runs the fused implementation while the "numba" backend is on and the arguments fit it
    (``implemented_when``), and its composition otherwise.
    """

    def __init__(self, composite):
        self.composite = composite
        self.name = composite.__name__
        self.implementation = self.implemented_when = None
        self.__doc__ = composite.__doc__
        self.__wrapped__ = composite

    def implement(self, op, when=None):
        """Register ``op`` (an engine op with the composite's arguments and result) beneath this function, for
        the calls where ``when(*args, **kwargs)`` holds (every call when None). Returns ``op`` unchanged."""
        self.implementation, self.implemented_when = op, when
        return op

    def composite_vjp(self, ctx, g) -> tuple:
        """The gradients of the composition's arguments at ``ctx.inputs``, seeded with ``g``, recorded as a graph:
        the backward of a fused implementation differentiated again (``create_graph``)."""
        # Each argument position gets an alias of its own (an identity node on it), so that the gradient
        # of one position never includes a path through another (the same tensor twice, or x and 2x).
        aliases = [reshape(x, shape=x.shape) if needed else x for x, needed in zip(ctx.inputs, ctx.needs_grad)]
        wanted = [a for a, needed in zip(aliases, ctx.needs_grad) if needed]
        out = self.composite(*aliases, **ctx.static)  # g seeds the walk as a Tensor: the result depends on it
        grads = iter(gradients(out, wanted, grad_output=g, create_graph=True))
        return tuple(next(grads) if needed else None for needed in ctx.needs_grad)

    def __call__(self, *args, **kwargs):
        if self.implementation is not None and backend.active() == "numba" and (
                self.implemented_when is None or self.implemented_when(*args, **kwargs)):
            return self.implementation(*args, **kwargs)
        return self.composite(*args, **kwargs)

    def __repr__(self) -> str:
        implementation = f", implementation={self.implementation.name}" if self.implementation is not None else ""
        return f"<function {self.name}{implementation}>"


def function(composite) -> ModelFunction:
    """Decorator: a composite definition becomes a ``ModelFunction`` that a fused implementation can join."""
    return ModelFunction(composite)


# ------------------------------------------------------------------------ layers
@function
def linear(x, weight, bias=None):
    """y = x Wᵀ + b over the last axis: x (..., in), W (out, in), b (out,) or None → y (..., out).

    All leading axes are folded into one 2-D product (one BLAS call, not a batch of small ones).
    Raises ValueError when the shapes do not fit.
    """
    x_shape, w_shape = np.shape(x), np.shape(weight)
    if len(x_shape) == 0 or len(w_shape) != 2 or x_shape[-1] != w_shape[1] or (
            bias is not None and np.shape(bias) != w_shape[:1]):
        raise ValueError(f"linear: x {x_shape}, weight {w_shape} and bias "
                         f"{None if bias is None else np.shape(bias)}; expected (..., in), (out, in) and "
                         f"(out,)")
    rows = x if len(x_shape) == 2 else x.reshape(-1, x_shape[-1])
    y = rows @ transpose(weight)
    if bias is not None:
        y = y + bias
    return y if len(x_shape) == 2 else y.reshape(*x_shape[:-1], w_shape[0])


@function
def linear_relu(x, weight, bias):
    """max(x Wᵀ + b, 0): a linear layer and its ReLU (shapes as ``linear``), for a model that wants both as
    one node (``nn.MLP`` calls it for each hidden layer); the layer's output is not a tensor of the graph."""
    return relu(linear(x, weight, bias))


# ------------------------------------------------------------------------ likelihoods
LOSS_REDUCTIONS = ("none", "sum", "mean")
"""What a loss does with its per-element values: keep them, or sum or average them."""


@function
def binary_cross_entropy_with_logits(logits, targets, reduction="mean"):
    """ℓ(z, t) = −[t log σ(z) + (1 − t) log(1 − σ(z))] = t·softplus(−z) + (1 − t)·softplus(z), in nats.

    Both terms are non-negative (nothing cancels), and a term whose weight t or 1 − t is exactly 0
    counts 0, also where its softplus is infinite: ℓ(+∞, 1) = ℓ(−∞, 0) = 0, ℓ(±∞, ½) = ∞ (as PyTorch).
    ∂ℓ/∂z = σ(z) − t everywhere, ±∞ included; ∂ℓ/∂t = −z, except at those two points, where the
    dropped term contributes 0. ``logits`` and ``targets`` broadcast together; ``reduction`` is
    "none", "sum" or "mean".
    """
    if reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"binary_cross_entropy_with_logits: reduction must be one of {sorted(LOSS_REDUCTIONS)}, "
                         f"got {reduction!r}")
    try:
        np.broadcast_shapes(np.shape(logits), np.shape(targets))
    except ValueError:
        raise ValueError(f"binary_cross_entropy_with_logits: cannot apply to shapes {np.shape(value(logits))}, "
                         f"{np.shape(value(targets))}: they do not broadcast together") from None
    z, t = value(logits), value(targets)
    drop_negative, drop_positive = (t == 0) & (z == -np.inf), (t == 1) & (z == np.inf)  # 0·∞ there
    loss = (where(drop_negative, 0, targets * softplus(-where(drop_negative, 0, logits)))
            + where(drop_positive, 0, (1 - targets) * softplus(where(drop_positive, 0, logits))))
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()


@function
def bernoulli_log_prob(logits, targets):
    """log p(targets) under independent Bernoulli(σ(logits)), summed over the last axis, in nats.

    = −Σ_j ℓ(z_j, t_j) with ℓ the binary cross-entropy with logits. ``targets`` in [0, 1] (a grey
    level is a soft target) broadcast against ``logits``: logits (S, batch, d) score targets
    (batch, d); the result has the broadcast shape without its last axis. Raises ValueError for
    targets outside [0, 1] (the fused implementation finds them within its own pass).
    """
    check_probabilities("bernoulli_log_prob", targets)
    return -binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(axis=-1)


def check_probabilities(owner: str, targets) -> None:
    """A ValueError naming ``owner`` unless every element of ``targets`` lies in [0, 1]."""
    array = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    if array.size and not (array.min() >= 0 and array.max() <= 1):  # NaN fails too
        raise ValueError(f"{owner}: targets must hold probabilities in [0, 1], got values in [{array.min()}, "
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
    """KL(N(μ, σ²) ‖ N(m, s²)) = ½ Σ_j [σ_j²/s_j² − log(σ_j²/s_j²) − 1 + ((μ_j − m_j)/s_j)²], over
    the last axis, in nats.

    σ²/s² is exp(log σ² − log s²) and (μ − m)/s a standardized residual (``gaussian_log_prob``):
    σ² and 1/s² are never formed apart, so equal extreme variances (float32 beyond ±88, float64
    beyond ±709) give their small exact value, not ∞·0.
    """
    log_ratio = logvar - other_logvar
    standardized = _standardized(mu - other_mu, other_logvar)
    return 0.5 * (exp(log_ratio) - log_ratio - 1.0 + standardized * standardized).sum(axis=-1)


@function
def gaussian_log_prob(x, mu, logvar):
    """log N(x; μ, diag σ²) = −½ Σ_j [log 2π + log σ_j² + ((x_j − μ_j)/σ_j)²] over the last axis, in nats.

    The standardized residual (x − μ)/σ, σ = exp(½ log σ²), is formed before squaring: at x = μ it
    is 0 for any σ > 0, where (x − μ)²·exp(−log σ²) would be 0·∞ once exp(−log σ²) overflows
    (log σ² < −88 in float32).
    """
    standardized = _standardized(x - mu, logvar)
    return -0.5 * (LOG_2PI + logvar + standardized * standardized).sum(axis=-1)


def _standardized(difference, logvar):
    """difference / σ with σ = exp(½ log σ²), and 0 where that quotient is 0 but its pieces are not finite:
    where σ underflows to 0 at a difference of 0 (0/0: log σ² below about −207 in float32, −1490 in
    float64) and where σ overflows to ∞ (its gradient would be 0·∞ through exp).

    Only there are the residual and its derivatives set to their limit, 0 (a ``where`` on a safe σ);
    elsewhere the graph, and every derivative, is the plain quotient's.
    """
    scale = exp(0.5 * logvar)
    sigma, residual = value(scale), value(difference)
    limit = ((residual == 0) & (sigma == 0)) | (np.isinf(sigma) & np.isfinite(residual))
    if not np.any(limit):
        return difference / scale
    safe_scale = exp(0.5 * where(limit, 0.0, logvar))  # no exp at ∞ in the graph: its gradient would be 0·∞
    return where(limit, 0.0, difference / safe_scale)
