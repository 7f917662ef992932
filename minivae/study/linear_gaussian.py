"""A linear-Gaussian latent-variable model: everything the VAE approximates, in closed form.

Model, with θ = (W, b, log σ):   z ~ N(0, I_d),   x | z ~ N(W z + b, σ² I_D).

Its marginal and posterior are Gaussian (Bishop, PRML §2.3.3 and §12.2):

    p(x)   = N(x; b, C),        C = W Wᵀ + σ² I_D,
    p(z|x) = N(z; m(x), Σ),     Σ = (I_d + WᵀW / σ²)⁻¹,   m(x) = Σ Wᵀ (x − b) / σ²,

so ln p(x), the exact posterior, the ELBO L(q, θ) of a Gaussian q and KL(q ‖ p(z|x)) can all be
computed exactly, and the identity ln p(x) = KL(q ‖ p(z|x)) + L(q, θ) (paper eq. 1) checked to
float64 precision.

The approximate posterior is ``LinearGaussianEncoder``: q(z|x) = N(A x + c, L Lᵀ) with L lower
triangular. Σ is not diagonal unless W has orthogonal columns, so the covariance is full (a
Cholesky factor); and because m(x) is linear in x and Σ does not depend on x, this amortized
family contains the exact posterior of every x at once. Everything here is meant for float64.
"""
from __future__ import annotations

import numpy as np

from ..distributions import GaussianLikelihood, StandardNormal
from ..distributions.gaussian import LOG_2PI
from ..engine import Tensor, exp, no_grad
from ..functions import linear
from ..checks import as_float_tensor, as_generator, is_positive_int
from ..nn import Module, Parameter
from ..optim import Adam
from ..vae import importance_weighted_bound as bound_of_log_weights


def _check_data(owner: str, x, data_dim: int) -> Tensor:
    x = as_float_tensor(x, owner, "x")
    if x.ndim != 2 or x.shape[1] != data_dim:
        raise ValueError(f"{owner}: x must have shape (n, {data_dim}), got {x.shape}")
    return x


def _check_dims(owner: str, data_dim, latent_dim) -> None:
    if not (is_positive_int(data_dim) and is_positive_int(latent_dim)):
        raise ValueError(f"{owner}: data_dim and latent_dim must be positive ints, got {data_dim!r} and {latent_dim!r}")


class LinearGaussianModel(Module):
    """p_θ(x, z) = N(z; 0, I_d) · N(x; W z + b, σ² I_D), with W of shape (D, d)."""

    def __init__(self, weight, bias, log_sigma):
        weight, bias, log_sigma = (np.asarray(a) for a in (weight, bias, log_sigma))
        if weight.ndim != 2 or bias.shape != weight.shape[:1] or log_sigma.shape != ():
            raise ValueError(f"LinearGaussianModel: needs weight (D, d), bias (D,) and a scalar log_sigma, got "
                             f"shapes {weight.shape}, {bias.shape} and {log_sigma.shape}")
        self.weight, self.bias, self.log_sigma = Parameter(weight), Parameter(bias), Parameter(log_sigma)

    @classmethod
    def random(cls, data_dim: int, latent_dim: int, rng=None, sigma: float = 0.5) -> LinearGaussianModel:
        """W and b with standard-normal entries, noise level ``sigma``, in float64."""
        _check_dims("LinearGaussianModel.random", data_dim, latent_dim)
        rng = as_generator(rng, "LinearGaussianModel.random")
        return cls(rng.standard_normal((data_dim, latent_dim)), rng.standard_normal(data_dim), np.log(sigma))

    @classmethod
    def maximum_likelihood(cls, x, latent_dim: int) -> LinearGaussianModel:
        """θ maximizing Σ_n ln p(x_n): probabilistic PCA's closed form (Tipping & Bishop 1999).

        With λ₁ ≥ … ≥ λ_D the eigenvalues of the data covariance and U_d the first d eigenvectors:
        b = x̄, σ² = mean(λ_{d+1}, …, λ_D), W = U_d (Λ_d − σ² I)^½ (unique up to a rotation of z).
        """
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or not is_positive_int(latent_dim) or latent_dim >= x.shape[1] or len(x) < 2:
            raise ValueError(f"LinearGaussianModel.maximum_likelihood: needs x of shape (n >= 2, D) and "
                             f"0 < latent_dim < D, got {x.shape} and {latent_dim!r}")
        mean = x.mean(axis=0)
        eigenvalues, eigenvectors = np.linalg.eigh(np.cov(x, rowvar=False, bias=True))
        eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
        noise = eigenvalues[latent_dim:].mean()
        weight = eigenvectors[:, :latent_dim] * np.sqrt(np.maximum(eigenvalues[:latent_dim] - noise, 0.0))
        return cls(weight, mean, 0.5 * np.log(noise))

    @property
    def data_dim(self) -> int:
        return self.weight.shape[0]

    @property
    def latent_dim(self) -> int:
        return self.weight.shape[1]

    @property
    def noise_variance(self) -> float:
        return float(np.exp(2 * self.log_sigma.data))

    def sample(self, n: int, rng) -> np.ndarray:
        """n draws x = W z + b + σ ε of the model, shape (n, D)."""
        if not is_positive_int(n):
            raise ValueError(f"LinearGaussianModel.sample: n must be a positive int, got {n!r}")
        rng = as_generator(rng, "LinearGaussianModel.sample")
        z = rng.standard_normal((n, self.latent_dim))
        noise = rng.standard_normal((n, self.data_dim))
        return z @ self.weight.data.T + self.bias.data + np.sqrt(self.noise_variance) * noise

    # ----------------------------------------------------------------- exact quantities (float64 arrays)
    def log_marginal(self, x) -> np.ndarray:
        """ln p(x) = ln N(x; b, W Wᵀ + σ² I), per row of x."""
        x = _check_data("LinearGaussianModel.log_marginal", x, self.data_dim).data
        W = self.weight.data
        cholesky = np.linalg.cholesky(W @ W.T + self.noise_variance * np.eye(self.data_dim))
        whitened = np.linalg.solve(cholesky, (x - self.bias.data).T)
        return -0.5 * (self.data_dim * LOG_2PI + (whitened ** 2).sum(axis=0)) - np.log(np.diag(cholesky)).sum()

    def posterior(self, x) -> tuple[np.ndarray, np.ndarray]:
        """p(z|x) = N(m(x), Σ): the means m(x), shape (n, d), and the shared covariance Σ, shape (d, d)."""
        x = _check_data("LinearGaussianModel.posterior", x, self.data_dim).data
        W = self.weight.data
        covariance = np.linalg.inv(np.eye(self.latent_dim) + W.T @ W / self.noise_variance)
        means = (x - self.bias.data) @ W @ covariance / self.noise_variance
        return means, covariance

    # ----------------------------------------------------------------- the ELBO and its terms (engine)
    def log_likelihood(self, x, z) -> Tensor:
        """ln p(x|z) = ln N(x; W z + b, σ² I), per sample: z of shape (..., n, d) gives (..., n)."""
        return GaussianLikelihood(z @ self.weight.T + self.bias, 2.0 * self.log_sigma).log_prob(x)

    def log_prior(self, z) -> Tensor:
        """ln p(z) = ln N(z; 0, I), per sample."""
        return StandardNormal(self.latent_dim, self.weight.dtype).log_prob(z)

    def expected_log_likelihood(self, x, encoder: LinearGaussianEncoder) -> Tensor:
        """E_q[ln p(x|z)] = −D/2 ln 2πσ² − (‖x − W μ − b‖² + ‖W L‖²_F) / 2σ², per row of x."""
        x = _check_data("LinearGaussianModel.expected_log_likelihood", x, self.data_dim)
        residual = x - linear(encoder.mean(x), self.weight, self.bias)
        spread = ((self.weight @ encoder.scale_tril()) ** 2).sum()
        squared = (residual * residual).sum(axis=-1) + spread
        return -0.5 * self.data_dim * (LOG_2PI + 2.0 * self.log_sigma) - 0.5 * squared * exp(-2.0 * self.log_sigma)

    def elbo(self, x, encoder: LinearGaussianEncoder) -> Tensor:
        """L(q, θ; x) = E_q[ln p(x|z)] − KL(q(z|x) ‖ p(z)) (paper eq. 3), exact, per row of x."""
        return self.expected_log_likelihood(x, encoder) - encoder.kl_to_prior(x)


class LinearGaussianEncoder(Module):
    """q_φ(z|x) = N(A x + c, L Lᵀ), φ = (A, c, L); L = strictly-lower part + diag(exp(log_diagonal)).

    ``LinearGaussianEncoder.standard(D, d)`` starts at q(z|x) = N(0, I) = p(z) for every x.
    """

    def __init__(self, weight, bias, strict_lower, log_diagonal):
        weight, bias, strict_lower, log_diagonal = (np.asarray(a) for a in (weight, bias, strict_lower, log_diagonal))
        d = bias.shape[0] if bias.ndim == 1 else -1
        if weight.ndim != 2 or weight.shape[0] != d or strict_lower.shape != (d, d) or log_diagonal.shape != (d,):
            raise ValueError(f"LinearGaussianEncoder: needs weight (d, D), bias (d,), strict_lower (d, d) and "
                             f"log_diagonal (d,), got shapes {weight.shape}, {bias.shape}, {strict_lower.shape} "
                             f"and {log_diagonal.shape}")
        self.weight, self.bias = Parameter(weight), Parameter(bias)
        self.strict_lower, self.log_diagonal = Parameter(strict_lower), Parameter(log_diagonal)

    @classmethod
    def standard(cls, data_dim: int, latent_dim: int) -> LinearGaussianEncoder:
        """A = 0, c = 0, L = I in float64: q(z|x) = N(0, I) for every x."""
        _check_dims("LinearGaussianEncoder.standard", data_dim, latent_dim)
        return cls(np.zeros((latent_dim, data_dim)), np.zeros(latent_dim), np.zeros((latent_dim, latent_dim)),
                   np.zeros(latent_dim))

    @property
    def latent_dim(self) -> int:
        return self.bias.shape[0]

    def mean(self, x) -> Tensor:
        """μ(x) = A x + c, shape (n, d)."""
        return linear(as_float_tensor(x, "LinearGaussianEncoder.mean", "x"), self.weight, self.bias)

    def scale_tril(self) -> Tensor:
        """L, lower triangular with a positive diagonal, so that L Lᵀ is a covariance."""
        d, dtype = self.latent_dim, self.strict_lower.dtype  # the masks follow the parameters' dtype
        return self.strict_lower * np.tril(np.ones((d, d), dtype), -1) + exp(self.log_diagonal) * np.eye(d, dtype=dtype)

    def covariance(self) -> np.ndarray:
        """L Lᵀ."""
        scale = self.scale_tril().data
        return scale @ scale.T

    def log_det_covariance(self) -> Tensor:
        """ln det(L Lᵀ) = 2 Σ_j ln L_jj."""
        return 2.0 * self.log_diagonal.sum()

    def kl_to_prior(self, x) -> Tensor:
        """KL(N(μ, L Lᵀ) ‖ N(0, I)) = ½ (‖μ‖² + ‖L‖²_F − d − ln det L Lᵀ), per row of x."""
        mean = self.mean(x)
        trace = (self.scale_tril() ** 2).sum()
        return 0.5 * ((mean * mean).sum(axis=-1) + trace - self.latent_dim - self.log_det_covariance())

    def rsample_with_log_prob(self, x, rng, samples: int) -> tuple[Tensor, Tensor]:
        """z = μ(x) + L ε with ε ~ N(0, I), shape (S, n, d), and ln q(z|x), shape (S, n).

        By the change of variables z = g(ε), ln q(z|x) = ln N(ε; 0, I) − ln |det ∂z/∂ε|
        = ln N(ε; 0, I) − Σ_j ln L_jj: both are differentiable in φ, without inverting L.
        """
        if not is_positive_int(samples):
            raise ValueError(f"LinearGaussianEncoder.rsample_with_log_prob: samples must be a positive int, "
                             f"got {samples!r}")
        mean = self.mean(x)
        eps = as_generator(rng, "LinearGaussianEncoder.rsample_with_log_prob").standard_normal(
            (samples, *mean.shape)).astype(mean.dtype)
        z = mean + Tensor(eps) @ self.scale_tril().T
        log_q = StandardNormal(self.latent_dim, mean.dtype).log_prob(eps) - self.log_diagonal.sum()
        return z, log_q


def gaussian_kl(mean_q, covariance_q, mean_p, covariance_p) -> np.ndarray:
    """KL(N(μ_q, Σ_q) ‖ N(μ_p, Σ_p)) = ½ [tr(Σ_p⁻¹Σ_q) + (μ_p − μ_q)ᵀ Σ_p⁻¹ (μ_p − μ_q) − d + ln det Σ_p − ln det Σ_q],
    per row of the means (each of shape (n, d); the covariances (d, d) are shared)."""
    difference = np.asarray(mean_p) - np.asarray(mean_q)
    precision_p = np.linalg.inv(covariance_p)
    mahalanobis = np.einsum("ni,ij,nj->n", difference, precision_p, difference)
    log_det_ratio = np.linalg.slogdet(covariance_p)[1] - np.linalg.slogdet(covariance_q)[1]
    return 0.5 * (np.trace(precision_p @ covariance_q) + mahalanobis - len(covariance_q) + log_det_ratio)


def kl_to_posterior(model: LinearGaussianModel, encoder: LinearGaussianEncoder, x) -> np.ndarray:
    """KL(q(z|x) ‖ p(z|x)), exact, per row of x: the gap ln p(x) − L(q, θ; x) of paper eq. 1."""
    means, covariance = model.posterior(x)
    with no_grad():
        q_means = encoder.mean(x).data
    return gaussian_kl(q_means, encoder.covariance(), means, covariance)


def importance_weighted_bound(model: LinearGaussianModel, encoder: LinearGaussianEncoder, x, rng, k: int) -> np.ndarray:
    """L_k = ln (1/k) Σ_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x), per row of x (Burda et al. 2016).

    E[L_1] = L(q, θ) ≤ E[L_k] ≤ E[L_{k+1}] ≤ ln p(x), and E[L_k] tends to ln p(x); at q = p(z|x)
    every weight is p(x), so L_k = ln p(x) for every draw. The formula is the VAE's
    (``minivae.vae.importance_weighted_bound``), applied to this model's exact log-weights.
    """
    if not is_positive_int(k):
        raise ValueError(f"importance_weighted_bound: k must be a positive int, got {k!r}")
    with no_grad():
        z, log_q = encoder.rsample_with_log_prob(x, rng, k)
        log_w = model.log_likelihood(x, z) + model.log_prior(z) - log_q
        return bound_of_log_weights(log_w).data


def maximize_elbo(model: LinearGaussianModel, encoder: LinearGaussianEncoder, x, parameters, steps: int,
                  lr: float = 0.1) -> list[float]:
    """Adam ascent on the mean exact ELBO over ``parameters`` (the encoder's, the model's, or both).

    The learning rate falls linearly from ``lr`` to 0: Adam's step m̂/√v̂ does not shrink as the
    gradient vanishes, so at a constant rate it would circle the optimum instead of settling.
    Returns the mean ELBO before each step.
    """
    if not is_positive_int(steps):
        raise ValueError(f"maximize_elbo: steps must be a positive int, got {steps!r}")
    optimizer = Adam(parameters, lr=lr)
    history = []
    for step in range(steps):
        optimizer.lr = lr * (1 - step / steps)
        optimizer.zero_grad()
        objective = model.elbo(x, encoder).mean()
        history.append(objective.item())
        (-objective).backward()
        optimizer.step()
    return history
