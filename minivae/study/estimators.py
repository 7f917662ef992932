"""Two Monte Carlo estimators of ∇_φ E_{q_φ(z)}[f(z)], and the measurement of their variance.

The score-function (log-derivative, REINFORCE) estimator of Kingma & Welling §2.2 uses
∇_φ q_φ = q_φ ∇_φ log q_φ:

    ∇_φ E_q[f(z)] = E_q[(f(z) − b) ∇_φ log q_φ(z)] ≈ (1/S) Σ_s (f(z_s) − b_s) ∇_φ log q_φ(z_s),

for any baseline b that does not depend on z_s (E_q[∇_φ log q_φ] = 0). The reparameterization
estimator of §2.3 writes z = g_φ(ε) with noise ε ~ p(ε) free of φ and differentiates through g:

    ∇_φ E_q[f(z)] = E_ε[∇_φ f(g_φ(ε))] ≈ (1/S) Σ_s ∇_φ f(g_φ(ε_s)).

Both are unbiased; ``minivae.study.variance`` measures how far apart their variances are for the
VAE's encoder, along with those of the two SGVB estimators of the ELBO (paper eqs. 6 and 7).
"""
from __future__ import annotations

import numpy as np

from ..checks import is_positive_int
from ..distributions import DiagonalGaussian, Logistic
from ..engine import Tensor, no_grad
from ..engine import gradients as engine_gradients
from ..vae import log_importance_weight


# ------------------------------------------------------------------------------ the two estimators
def gradients(objective: Tensor, params) -> list[np.ndarray]:
    """∂objective/∂p for each tensor p of ``params``, as arrays (zeros where it does not depend on p).

    The engine's walk (``mv.gradients``) without ``create_graph``: no ``.grad`` is touched.
    """
    return [g.data for g in engine_gradients(objective, params, create_graph=False)]


def _check_samples(owner: str, samples) -> None:
    if not is_positive_int(samples):
        raise ValueError(f"{owner}: samples must be a positive int, got {samples!r}")


def _per_sample_values(owner: str, f, z: Tensor, samples: int) -> Tensor:
    """f(z), checked to be a Tensor whose first axis is the sample axis."""
    values = f(z)
    if not isinstance(values, Tensor) or values.ndim == 0 or values.shape[0] != samples:
        shape = values.shape if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"{owner}: f must return a Tensor of per-sample values, shape ({samples}, ...), got {shape}")
    return values


def score_function_gradient(f, q, params, rng, samples: int, baseline=None) -> list[np.ndarray]:
    """(1/S) Σ_s (f(z_s) − b_s) ∇_φ log q(z_s), z_s ~ q: the score-function estimate of ∇_φ E_q[Σ f(z)].

    ``q`` has ``rsample(rng, samples)`` and ``log_prob(z)`` and is built from ``params`` (φ); ``f``
    maps samples z of shape (S, …) to per-sample values of shape (S, …), summed over all but the
    first axis. Only f's values are used, never its gradient: if f depends on φ only through
    log q, as the ELBO's integrand log p(x, z) − log q(z), the dropped term E_q[∇_φ log q] is zero
    and the estimate stays unbiased.

    ``baseline``: None, an array broadcasting against f's values (a constant per data point, as an
    independent estimate of E_q[f]), or ``"leave-one-out"``: b_s = mean of the other samples' f.
    """
    owner = "score_function_gradient"
    _check_samples(owner, samples)
    with no_grad():
        z = q.rsample(rng, samples)
        values = _per_sample_values(owner, f, z, samples).data
    if isinstance(baseline, str):
        if baseline != "leave-one-out":
            raise ValueError(f"{owner}: baseline must be None, an array or 'leave-one-out', got {baseline!r}")
        if samples < 2:
            raise ValueError(f"{owner}: the leave-one-out baseline needs samples >= 2, got {samples}")
        baseline = (values.sum(axis=0) - values) / (samples - 1)
    centred = values if baseline is None else values - np.asarray(baseline, values.dtype)
    surrogate = (Tensor(centred) * q.log_prob(z)).sum() / samples
    return gradients(surrogate, params)


def reparameterization_gradient(f, q, params, rng, samples: int) -> list[np.ndarray]:
    """(1/S) Σ_s ∇_φ f(g_φ(ε_s)): the reparameterization estimate of ∇_φ E_q[Σ f(z)].

    ``q.rsample(rng, samples)`` draws z = g_φ(ε) differentiably; ``f`` maps z of shape (S, …) to
    per-sample values of shape (S, …), summed over all but the first axis, and may itself depend
    on φ (its gradient is followed).
    """
    owner = "reparameterization_gradient"
    _check_samples(owner, samples)
    values = _per_sample_values(owner, f, q.rsample(rng, samples), samples)
    return gradients(values.sum() / samples, params)


# ------------------------------------------------------------------------------ the VAE's encoder
POSTERIORS = ("gaussian", "logistic")
GRADIENT_ESTIMATORS = ("score-function", "score-function+baseline", "monte-carlo", "closed-form")


def approximate_posterior(vae, x, family: str = "gaussian"):
    """q_φ(z|x) from the encoder's two heads (a, c) = vae.encode(x).

    "gaussian": N(a, diag exp(c)), the paper's choice, sampled by the location-scale transform.
    "logistic": Logistic(a, exp(c/2)), sampled by its inverse CDF; no closed-form KL to N(0, I).
    """
    if family not in POSTERIORS:
        raise ValueError(f"approximate_posterior: family must be one of {POSTERIORS}, got {family!r}")
    mu, logvar = vae.encode(x)
    return DiagonalGaussian(mu, logvar) if family == "gaussian" else Logistic(mu, 0.5 * logvar)


def encoder_parameters(vae) -> list:
    """φ: the parameters of the encoder's trunk and of its two heads."""
    return [p for module in (vae.encoder, vae.encoder_mu, vae.encoder_logvar) for p in module.parameters()]


def log_weight(vae, x, q, z) -> Tensor:
    """log p(x|z) + log p(z) − log q(z|x) per sample, shape (S, batch): the ELBO's integrand (eq. 2)."""
    return log_importance_weight(vae.reconstruction_log_likelihood(x, z), vae.log_prior(z), q.log_prob(z))


def encoder_gradient(vae, x, estimator: str, rng, samples: int, family: str = "gaussian",
                     baseline=None) -> list[np.ndarray]:
    """An estimate of ∇_φ of the batch-mean ELBO, one array per ``encoder_parameters(vae)``.

    "score-function": the log-derivative estimator of E_q[log p(x, z) − log q(z|x)], with
    ``baseline`` (per data point) if given. "score-function+baseline" needs that baseline.
    "monte-carlo" (SGVB-A, eq. 6): the reparameterization estimator of the same expectation.
    "closed-form" (SGVB-B, eq. 7): the reparameterization estimator of E_q[log p(x|z)], plus the
    exact gradient of −KL(q ‖ p(z)) (Gaussian posterior only). "monte-carlo" and "closed-form" are
    the names ``minivae train --estimator`` gives the two SGVB estimators.
    """
    if estimator not in GRADIENT_ESTIMATORS:
        raise ValueError(f"encoder_gradient: estimator must be one of {GRADIENT_ESTIMATORS}, got {estimator!r}")
    if (estimator == "score-function+baseline") != (baseline is not None):
        raise ValueError(f"encoder_gradient: a baseline goes with 'score-function+baseline' only, got estimator "
                         f"{estimator!r} with baseline {'given' if baseline is not None else 'None'}")
    if estimator == "closed-form" and family != "gaussian":
        raise ValueError(f"encoder_gradient: 'closed-form' (SGVB-B) needs the closed-form KL of the Gaussian "
                         f"posterior, got {family!r}")
    params = encoder_parameters(vae)
    q = approximate_posterior(vae, x, family)
    batch = len(x)
    if estimator.startswith("score-function"):
        return score_function_gradient(lambda z: log_weight(vae, x, q, z) / batch, q, params, rng, samples,
                                       None if baseline is None else np.asarray(baseline) / batch)
    if estimator == "monte-carlo":
        return reparameterization_gradient(lambda z: log_weight(vae, x, q, z) / batch, q, params, rng, samples)
    reconstruction = reparameterization_gradient(lambda z: vae.reconstruction_log_likelihood(x, z) / batch,
                                                 q, params, rng, samples)
    kl = gradients(q.kl_divergence().sum() / batch, params)
    return [g - k for g, k in zip(reconstruction, kl)]


def elbo_estimate(vae, x, rng, samples: int = 1, family: str = "gaussian") -> Tensor:
    """The ELBO per data point from ``samples`` reparameterized draws, shape (batch,): "closed-form"
    (SGVB-B) for the Gaussian posterior, "monte-carlo" (SGVB-A) for the others."""
    if family == "gaussian":
        return vae.elbo(x, rng, samples, estimator="closed-form")
    q = approximate_posterior(vae, x, family)
    return log_weight(vae, x, q, q.rsample(rng, samples)).mean(axis=0)
