"""Gaussians with diagonal covariance: the VAE's posterior q(z|x), its prior p(z), and a likelihood.

Every density is over the last axis (the event); leading axes index independent distributions,
and a value of shape (S, *batch, d) is scored against parameters of shape (*batch, d).
"""
from __future__ import annotations

import numpy as np

from .. import functions
from ..engine import Tensor, exp, no_grad
from ..checks import as_float_tensor, as_generator, float_dtype, is_positive_int

LOG_2PI = functions.LOG_2PI


def check_event_size(owner: str, name: str, shape: tuple, size: int) -> None:
    """A ValueError unless ``shape`` ends with the event size ``size``."""
    if len(shape) == 0 or shape[-1] != size:
        raise ValueError(f"{owner}: {name} of shape {shape} does not end with the event size {size}")


class DiagonalGaussian:
    """N(mu, diag(exp(logvar))), parameterized by the mean and the log-variance.

    ``logvar`` may have fewer axes than ``mu`` (e.g. one variance shared by a batch); it is
    broadcast to ``mu``'s shape, and gradients flow back to its own shape.
    """

    def __init__(self, mu, logvar):
        owner = type(self).__name__
        mu = as_float_tensor(mu, owner, "mu")
        logvar = as_float_tensor(logvar, owner, "logvar", dtype=mu.dtype)
        try:
            broadcast = np.broadcast_shapes(mu.shape, logvar.shape)
        except ValueError:
            broadcast = None
        if broadcast != mu.shape or mu.ndim == 0:
            raise ValueError(f"{owner}: logvar of shape {logvar.shape} does not broadcast to mu's shape {mu.shape} "
                             f"(mu needs at least one axis, the event)")
        if logvar.shape != mu.shape:
            logvar = logvar + np.zeros(mu.shape, mu.dtype)
        self.mu, self.logvar = mu, logvar

    @property
    def std(self) -> Tensor:
        """σ = exp(½ logvar)."""
        return exp(0.5 * self.logvar)

    def rsample(self, rng, samples: int | None = None) -> Tensor:
        """z = mu + σ ⊙ ε with ε ~ N(0, I) in mu's dtype: the reparameterization trick (paper §2.4).

        Differentiable in mu and logvar. With ``samples=S`` the result has shape (S, *mu.shape).
        """
        if samples is not None and not is_positive_int(samples):
            raise ValueError(f"{type(self).__name__}.rsample: samples must be a positive int or None, got {samples!r}")
        shape = self.mu.shape if samples is None else (samples, *self.mu.shape)
        eps = as_generator(rng, f"{type(self).__name__}.rsample").standard_normal(shape, dtype=self.mu.dtype)
        return functions.gaussian_rsample(self.mu, self.logvar, eps)

    def sample(self, rng, samples: int | None = None) -> Tensor:
        """Like ``rsample``, without recording a graph."""
        with no_grad():
            return self.rsample(rng, samples)

    def log_prob(self, z) -> Tensor:
        """log N(z; mu, σ²) = −½ Σ_j [log 2π + logvar_j + (z_j − mu_j)² / σ_j²], over the last axis
        (``minivae.functions.gaussian_log_prob``)."""
        z = as_float_tensor(z, f"{type(self).__name__}.log_prob", "z", dtype=self.mu.dtype)
        check_event_size(f"{type(self).__name__}.log_prob", "z", z.shape, self.mu.shape[-1])
        return functions.gaussian_log_prob(z, self.mu, self.logvar)

    def entropy(self) -> Tensor:
        """H = ½ Σ_j (1 + log 2π + logvar_j), over the last axis."""
        return 0.5 * (1.0 + LOG_2PI + self.logvar).sum(axis=-1)

    def kl_divergence(self, other: DiagonalGaussian | None = None) -> Tensor:
        """KL(self ‖ other) in closed form, over the last axis; ``other=None`` means N(0, I).

        To N(0, I): −½ Σ_j (1 + logvar_j − mu_j² − σ_j²) (paper, appendix B). To N(m, s²):
        ½ Σ_j [log s_j² − logvar_j + (σ_j² + (mu_j − m_j)²) / s_j² − 1].
        """
        if other is None:
            return functions.kl_to_standard_normal(self.mu, self.logvar)
        if not isinstance(other, DiagonalGaussian):
            raise TypeError(f"{type(self).__name__}.kl_divergence: other must be a DiagonalGaussian or None, "
                            f"got {type(other).__name__}")
        if other.mu.dtype != self.mu.dtype:
            raise TypeError(f"{type(self).__name__}.kl_divergence: dtypes differ "
                            f"({self.mu.dtype} and {other.mu.dtype})")
        check_event_size(f"{type(self).__name__}.kl_divergence", "other's mu", other.mu.shape, self.mu.shape[-1])
        return functions.kl_diagonal_gaussians(self.mu, self.logvar, other.mu, other.logvar)


class StandardNormal(DiagonalGaussian):
    """N(0, I) over vectors of size ``size`` (the prior p(z)), in ``dtype`` (float32 or float64; others
    are a TypeError)."""

    def __init__(self, size: int, dtype=np.float32):
        if not is_positive_int(size):
            raise ValueError(f"StandardNormal: size must be a positive int, got {size!r}")
        zeros = np.zeros(size, float_dtype(dtype, "StandardNormal"))
        super().__init__(zeros, zeros)


class GaussianLikelihood(DiagonalGaussian):
    """p(x|z) = N(x; mean, exp(logvar)) for continuous data.

    ``mean`` comes from the decoder; ``logvar`` is a fixed number, or a learned ``Parameter`` of
    shape () or (d,) shared by every example, so that ``log_prob(x)`` also trains the variance.
    """

    def __init__(self, mean, logvar=0.0):
        mean = as_float_tensor(mean, "GaussianLikelihood", "mean")
        if isinstance(logvar, (int, float)):
            logvar = np.asarray(logvar, dtype=mean.dtype)
        super().__init__(mean, logvar)
