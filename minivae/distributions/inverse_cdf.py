"""Latent distributions sampled through their inverse CDF: z = F⁻¹(ε; θ) with ε ~ U(0, 1).

Kingma & Welling (section 2.4) list three ways to write z ~ q_φ(z|x) as a differentiable transform
z = g_φ(ε, x) of parameter-free noise ε; the first is the inverse CDF: with ε ~ U(0, 1), take
g_φ = F⁻¹_φ. Each class here gives F, F⁻¹ and log p in closed form as engine ops, so that the
pathwise gradient ∂z/∂θ = ∂F⁻¹(ε; θ)/∂θ and the gradient of log p reach the parameters.

Parameters are unconstrained (logs of positive quantities), like ``DiagonalGaussian(mu, logvar)``;
``log_prob`` sums over the last axis, the latent dimensions.
"""
from __future__ import annotations

import numpy as np

from ..engine import Tensor, exp, log, log1p, log_sigmoid, sigmoid, tanh, where
from ..engine.ops import value
from ..checks import as_float_tensor, as_generator, is_positive_int


def one_minus_exp(y) -> Tensor:
    """1 − eʸ for y ≤ 0, as −2t/(1 − t) with t = tanh(y/2): no cancellation when y is near 0."""
    t = tanh(0.5 * y)
    return -2.0 * t / (1.0 - t)


LOG_2 = float(np.log(2.0))


def log_one_minus_exp(y) -> Tensor:
    """log(1 − eʸ) for y ≤ 0, each part of its range in the form that keeps its relative precision
    (Mächler, "Accurately computing log(1 − exp(−|a|))", 2012): log(1 − eʸ) near 0, where 1 − eʸ is
    small and ``one_minus_exp`` gives it exactly, and log1p(−eʸ) below −log 2, where eʸ is small and
    log(1 − eʸ) would round 1 − eʸ to 1 (Kumaraswamy's F(1e-20) was −0.0).

    Each form is evaluated on a safe input where the other one is chosen, so that neither the value
    nor the gradient meets log 0 or 0/0 in the branch not taken.
    """
    near_zero = value(y) > -LOG_2
    return where(near_zero, log(one_minus_exp(where(near_zero, y, -1.0))),
                 log1p(-exp(where(near_zero, -1.0, y))))


class InverseCDFDistribution:
    """Independent scalar distributions, one per element of the broadcast parameter shape.

    A subclass gives ``icdf`` (F⁻¹), ``cdf`` (F) and ``log_density`` (log p, elementwise) as engine
    ops on its parameter tensors.
    """

    def __init__(self, **parameters):
        owner = type(self).__name__
        tensors = {name: as_float_tensor(value, owner, name) for name, value in parameters.items()}
        dtypes = {t.dtype for t in tensors.values()}
        if len(dtypes) > 1:
            described = ", ".join(f"{name} {t.dtype}" for name, t in tensors.items())
            raise TypeError(f"{owner}: parameters have different dtypes ({described}); convert one with .astype")
        try:
            self.batch_shape = np.broadcast_shapes(*(t.shape for t in tensors.values()))
        except ValueError:
            described = ", ".join(f"{name} {t.shape}" for name, t in tensors.items())
            raise ValueError(f"{owner}: parameter shapes do not broadcast ({described})") from None
        self.dtype = dtypes.pop()
        for name, tensor in tensors.items():
            setattr(self, name, tensor)

    def icdf(self, u) -> Tensor:
        """F⁻¹(u; θ): the quantile function."""
        raise NotImplementedError

    def cdf(self, z) -> Tensor:
        """F(z; θ) = P(Z ≤ z)."""
        raise NotImplementedError

    def log_density(self, z) -> Tensor:
        """log p(z; θ) for each element of z."""
        raise NotImplementedError

    def log_prob(self, z) -> Tensor:
        """log q(z) = Σ_j log p(z_j; θ_j), summed over the last axis."""
        return self.log_density(z).sum(axis=-1)

    def uniform(self, rng, samples=None) -> np.ndarray:
        """ε ~ U(0, 1) of shape ``(samples, *batch_shape)`` (or ``batch_shape``), strictly inside (0, 1)
        in this distribution's dtype, so that F⁻¹(ε) is finite."""
        if samples is not None and not is_positive_int(samples):
            raise ValueError(f"{type(self).__name__}.rsample: samples must be a positive int or None, got {samples!r}")
        shape = self.batch_shape if samples is None else (samples, *self.batch_shape)
        info = np.finfo(self.dtype)
        u = as_generator(rng, f"{type(self).__name__}.rsample").random(shape)
        return np.clip(u, info.tiny, 1 - info.epsneg).astype(self.dtype)

    def rsample(self, rng, samples=None) -> Tensor:
        """z = F⁻¹(ε; θ), ε ~ U(0, 1): a sample differentiable with respect to the parameters."""
        return self.icdf(self.uniform(rng, samples))


class Logistic(InverseCDFDistribution):
    """Logistic(μ, s) on ℝ, with s = exp(log_scale); a drop-in posterior for a N(0, I) prior.

    F(z) = σ((z − μ)/s),  F⁻¹(u) = μ + s·log(u / (1 − u)),
    log p(z) = log σ(t) + log σ(−t) − log s with t = (z − μ)/s,  entropy log s + 2.
    """

    def __init__(self, loc, log_scale):
        super().__init__(loc=loc, log_scale=log_scale)

    def _standardize(self, z):
        return (z - self.loc) * exp(-self.log_scale)

    def icdf(self, u) -> Tensor:
        return self.loc + exp(self.log_scale) * (log(u) - log1p(-u))

    def cdf(self, z) -> Tensor:
        return sigmoid(self._standardize(z))

    def log_density(self, z) -> Tensor:
        t = self._standardize(z)
        return log_sigmoid(t) + log_sigmoid(-t) - self.log_scale

    def entropy(self) -> Tensor:
        """H = Σ_j (log s_j + 2), summed over the last axis."""
        return (self.log_scale + 2.0).sum(axis=-1)


class Exponential(InverseCDFDistribution):
    """Exponential(λ) on [0, ∞), with λ = exp(log_rate).

    F(z) = 1 − e^(−λz),  F⁻¹(u) = −log(1 − u)/λ,  log p(z) = log λ − λz,  entropy 1 − log λ.
    """

    def __init__(self, log_rate):
        super().__init__(log_rate=log_rate)

    def icdf(self, u) -> Tensor:
        return -log1p(-u) * exp(-self.log_rate)

    def cdf(self, z) -> Tensor:
        return one_minus_exp(-exp(self.log_rate) * z)

    def log_density(self, z) -> Tensor:
        z = z if isinstance(z, Tensor) else Tensor(z)
        return where(z.data >= 0, self.log_rate - exp(self.log_rate) * z, -np.inf)

    def entropy(self) -> Tensor:
        """H = Σ_j (1 − log λ_j), summed over the last axis."""
        return (1.0 - self.log_rate).sum(axis=-1)


class Kumaraswamy(InverseCDFDistribution):
    """Kumaraswamy(a, b) on (0, 1), with a = exp(log_a), b = exp(log_b): a Beta look-alike whose
    inverse CDF, unlike the Beta's, is closed-form.

    F(z) = 1 − (1 − zᵃ)ᵇ,  F⁻¹(u) = (1 − (1 − u)^(1/b))^(1/a),
    log p(z) = log a + log b + (a − 1) log z + (b − 1) log(1 − zᵃ).
    Its entropy needs the digamma function, so it has no ``entropy`` method.
    """

    def __init__(self, log_a, log_b):
        super().__init__(log_a=log_a, log_b=log_b)

    def _log_one_minus_z_power_a(self, z):
        """log(1 − zᵃ) = log(1 − exp(a log z)), precise for zᵃ near 0 and near 1."""
        return log_one_minus_exp(exp(self.log_a) * log(z))

    def icdf(self, u) -> Tensor:
        z_power_a = one_minus_exp(log1p(-u) * exp(-self.log_b))    # zᵃ = 1 − (1 − u)^(1/b)
        return exp(log(z_power_a) * exp(-self.log_a))

    def cdf(self, z) -> Tensor:
        return one_minus_exp(exp(self.log_b) * self._log_one_minus_z_power_a(z))

    def log_density(self, z) -> Tensor:
        a, b = exp(self.log_a), exp(self.log_b)
        return self.log_a + self.log_b + (a - 1.0) * log(z) + (b - 1.0) * self._log_one_minus_z_power_a(z)


__all__ = ["one_minus_exp", "log_one_minus_exp", "InverseCDFDistribution", "Logistic", "Exponential", "Kumaraswamy"]
