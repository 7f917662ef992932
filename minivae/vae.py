"""The variational auto-encoder of Kingma & Welling, *Auto-Encoding Variational Bayes*.

Encoder q(z|x) = N(mu(x), diag exp(logvar(x))), prior p(z) = N(0, I), decoder p(x|z) a product
of Bernoullis with logits f(z). The evidence lower bound (ELBO)

    L(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)) ≤ log p(x)

is estimated from S reparameterized samples z_s = mu + σ ⊙ ε_s by either SGVB estimator:
``elbo_closed_form_kl`` (paper eq. 7) or ``elbo_monte_carlo`` (eq. 6). The same S samples also give
the importance-weighted bound of Burda, Grosse & Salakhutdinov (2015, eq. 8),

    L_S(x) = E[log (1/S) Σ_s p(x, z_s) / q(z_s|x)],   L_1 = L ≤ L_S ≤ L_{S+1} ≤ log p(x),

``importance_weighted_bound``: a training objective (``estimator="importance-weighted"``) and,
with S = 5,000, the evaluation's estimate of log p(x) (``VAE.importance_weighted_log_likelihood``).
"""
from __future__ import annotations

import math
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .checks import as_float_tensor, as_generator, float_dtype, is_positive_int
from .distributions import Bernoulli, DiagonalGaussian, StandardNormal
from .engine import Tensor, logsumexp, no_grad
from .nn import MLP, Linear, Module, Sequential, activation_class


def _is_one(kl_weight) -> bool:
    """β = 1 given as a Python number: the bound itself, with the graph it had before KL warm-up existed."""
    return isinstance(kl_weight, (int, float)) and kl_weight == 1


def elbo_closed_form_kl(reconstruction_log_likelihood: Tensor, kl_to_prior: Tensor, kl_weight=1.0) -> Tensor:
    """SGVB estimator B (eq. 7): L̃ᴮ = −β·KL(q(z|x) ‖ p(z)) + (1/S) Σ_s log p(x|z_s), β = ``kl_weight``.

    ``reconstruction_log_likelihood`` has shape (S, batch); ``kl_to_prior`` has shape (batch,). β = 1
    (the default) is the ELBO; β < 1 is KL warm-up's objective (a float, or a 0-d Tensor).
    """
    return reconstruction_log_likelihood.mean(axis=0) - (kl_to_prior if _is_one(kl_weight) else kl_to_prior * kl_weight)


def log_importance_weight(reconstruction_log_likelihood: Tensor, log_prior: Tensor, log_posterior: Tensor,
                          kl_weight=1.0) -> Tensor:
    """log w = log p(x|z) + β·[log p(z) − log q(z|x)], per sample; at β = 1 (the default) log [p(x, z) / q(z|x)].

    β = ``kl_weight`` weights the single-sample KL term log q(z|x) − log p(z), whose expectation
    under q is KL(q(z|x) ‖ p(z)): KL warm-up's weighting for the sampled estimators.
    """
    if _is_one(kl_weight):
        return reconstruction_log_likelihood + log_prior - log_posterior
    return reconstruction_log_likelihood + (log_prior - log_posterior) * kl_weight


def elbo_monte_carlo(reconstruction_log_likelihood: Tensor, log_prior: Tensor, log_posterior: Tensor,
                     kl_weight=1.0) -> Tensor:
    """SGVB estimator A (eq. 6): L̃ᴬ = (1/S) Σ_s [log p(x, z_s) − log q(z_s|x)], all terms of shape (S, batch)."""
    return log_importance_weight(reconstruction_log_likelihood, log_prior, log_posterior, kl_weight).mean(axis=0)


ELBO_REDUCTIONS = ("mean", "none")
"""What negative_elbo does with the per-example values: average them over the batch, or keep them."""


def _in_order_on_every_core(function, items):
    """``map(function, items)``, computed on every core the process may use, with the BLAS at one thread.

    The items are taken (drawn) in order in the calling thread and the results come back in order,
    so the numbers are those of ``map``. Each worker thread runs whole chunks — products, and the
    compiled passes between them, which release the GIL — so both cores stay busy where a two-thread
    BLAS would leave one spinning between products. Without ``threadpoolctl`` (or with one core),
    plain ``map``.
    """
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        workers = 1
    if workers == 1:
        yield from map(function, items)
        return
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        pending = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) > workers:  # at most one chunk waiting per core: memory stays bounded
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def importance_weighted_bound(log_weights: Tensor) -> Tensor:
    """L_k = log (1/k) Σ_i w_i over the first axis: Burda, Grosse & Salakhutdinov (2015), eq. 8.

    ``log_weights`` of shape (k, batch) holds log w_i = log p(x, z_i) − log q(z_i|x) for k draws
    z_i ~ q(z|x); the result, shape (batch,), in nats and in their dtype, is an estimate whose
    expectation is L_k ≤ log p(x) (L_1 is the ELBO; L_k rises with k). The log-sum-exp subtracts
    the largest weight first (``minivae.logsumexp``), so no exponential overflows in float32, and
    its gradient is the softmax of the weights times theirs (the reparameterized gradient). The
    one definition behind the training objective and the evaluation's 5,000-sample log p(x).
    """
    return logsumexp(log_weights, axis=0) - math.log(log_weights.shape[0])


ESTIMATORS = ("closed-form", "monte-carlo", "importance-weighted")


class VAE(Module):
    """An MLP encoder to (mu, logvar) and an MLP decoder to Bernoulli logits.

    ``VAE(784, (400,), 20)`` is the network of pytorch/examples: 784-400 ReLU, then two heads
    400-20 for mu and logvar; decoder 20-400 ReLU, 400-784 logits.
    """

    def __init__(self, input_dim: int = 784, hidden=(400,), latent_dim: int = 20, activation: str = "relu",
                 rng=None, dtype=np.float32):
        for name, value in (("input_dim", input_dim), ("latent_dim", latent_dim)):
            if not is_positive_int(value):
                raise ValueError(f"VAE: {name} must be a positive int, got {value!r}")
        if not isinstance(hidden, (list, tuple)) or not all(is_positive_int(width) for width in hidden):
            raise ValueError(f"VAE: hidden must be a list or tuple of positive ints, got {hidden!r}")
        activation_class(activation, "VAE")  # an unknown name fails here, naming the VAE
        dtype, rng = float_dtype(dtype, "VAE"), as_generator(rng, "VAE")
        self.input_dim, self.hidden, self.latent_dim = int(input_dim), [int(w) for w in hidden], int(latent_dim)
        self.activation = activation

        features = self.hidden[-1] if hidden else self.input_dim
        self.encoder = (MLP([self.input_dim, *self.hidden], activation, final_activation=activation, rng=rng,
                            dtype=dtype) if hidden else Sequential())
        self.encoder_mu = Linear(features, self.latent_dim, rng=rng, dtype=dtype)
        self.encoder_logvar = Linear(features, self.latent_dim, rng=rng, dtype=dtype)
        self.decoder = MLP([self.latent_dim, *reversed(self.hidden), self.input_dim], activation, rng=rng, dtype=dtype)
        self.prior = StandardNormal(self.latent_dim, dtype)
        for name, param in self.named_parameters():  # so that a printed graph names its leaves
            param.name = name

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the parameters, which inputs are converted to."""
        return self.encoder_mu.weight.dtype

    def _buffers(self) -> tuple:
        return (("prior.mu", self.prior.mu), ("prior.logvar", self.prior.logvar))

    @property
    def config(self) -> dict:
        """The constructor's arguments (JSON-friendly), so that ``VAE(**model.config)`` rebuilds the network."""
        return {"input_dim": self.input_dim, "hidden": list(self.hidden), "latent_dim": self.latent_dim,
                "activation": self.activation, "dtype": self.dtype.name}

    # ----------------------------------------------------------------- the networks
    def _as_data(self, x, owner: str, check_range: bool = True) -> Tensor:
        """x as a (batch, input_dim) Tensor of the model's dtype with values in [0, 1].

        ``check_range=False`` where the Bernoulli likelihood checks the values itself (within the
        fused kernel's pass): the training step makes no pass over the data of its own.
        """
        x = as_float_tensor(x, owner, "x", dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"{owner}: x must have shape (batch, {self.input_dim}), got {x.shape}")
        if check_range and x.size and not (x.data.min() >= 0.0 and x.data.max() <= 1.0):
            raise ValueError(f"{owner}: x must hold intensities in [0, 1], got values in "
                             f"[{x.data.min()}, {x.data.max()}]")
        return x

    def encode(self, x) -> tuple[Tensor, Tensor]:
        """The posterior's parameters (mu, logvar), each of shape (batch, latent_dim)."""
        return self._encode(self._as_data(x, "VAE.encode"))

    def _encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``encode`` for x already checked by ``_as_data``."""
        h = self.encoder(x)
        return self.encoder_mu(h), self.encoder_logvar(h)

    def posterior(self, x) -> DiagonalGaussian:
        """q(z|x)."""
        return DiagonalGaussian(*self.encode(x))

    def decode(self, z) -> Tensor:
        """The logits of p(x|z), of shape (*z.shape[:-1], input_dim)."""
        z = as_float_tensor(z, "VAE.decode", "z", dtype=self.dtype)
        if z.ndim == 0 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"VAE.decode: z must have shape (..., {self.latent_dim}), got {z.shape}")
        return self.decoder(z)

    # ----------------------------------------------------------------- the ELBO's terms
    def reconstruction_log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z), summed over the pixels: shape z.shape[:-1]."""
        return Bernoulli(self.decode(z)).log_prob(x)

    def kl_to_prior(self, posterior: DiagonalGaussian) -> Tensor:
        """KL(q(z|x) ‖ p(z)) in closed form (appendix B), per example."""
        return posterior.kl_divergence()

    def log_prior(self, z: Tensor) -> Tensor:
        """log p(z) = log N(z; 0, I), per sample."""
        return self.prior.log_prob(z)

    def elbo(self, x, rng, samples: int = 1, estimator: str = "closed-form", kl_weight=1.0) -> Tensor:
        """The ELBO of each example in nats, shape (batch,), from ``samples`` draws of z per example.

        ``estimator``: "closed-form" (SGVB-B, eq. 7), "monte-carlo" (SGVB-A, eq. 6) or
        "importance-weighted" (the bound L_k of ``importance_weighted_bound`` with k = ``samples``,
        ≥ the ELBO; at k = 1 it is SGVB-A). ``kl_weight`` β (a float or a 0-d Tensor) weights the KL
        term as KL warm-up does (``log_importance_weight``); β = 1, the default, is the bound itself.
        Raises ValueError for an unknown estimator or a samples count that is not a positive int.
        """
        if estimator not in ESTIMATORS:
            raise ValueError(f"VAE.elbo: estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if not is_positive_int(samples):
            raise ValueError(f"VAE.elbo: samples must be a positive int, got {samples!r}")
        x = self._as_data(x, "VAE.elbo", check_range=False)
        posterior = DiagonalGaussian(*self._encode(x))
        z = posterior.rsample(rng, samples=samples)
        log_px_given_z = self.reconstruction_log_likelihood(x, z)
        if estimator == "closed-form":
            return elbo_closed_form_kl(log_px_given_z, self.kl_to_prior(posterior), kl_weight)
        if estimator == "monte-carlo":
            return elbo_monte_carlo(log_px_given_z, self.log_prior(z), posterior.log_prob(z), kl_weight)
        return importance_weighted_bound(log_importance_weight(log_px_given_z, self.log_prior(z),
                                                               posterior.log_prob(z), kl_weight))

    def negative_elbo(self, x, rng, samples: int = 1, estimator: str = "closed-form",
                      reduction: str = "mean", kl_weight=1.0) -> Tensor:
        """−ELBO in nats: averaged over the batch (``"mean"``, a scalar) or per example (``"none"``).

        The training loss. ``estimator`` is "closed-form" (SGVB-B, eq. 7), "monte-carlo" (SGVB-A,
        eq. 6) or "importance-weighted" (−L_k, k = ``samples``); ``kl_weight`` as in ``elbo``.
        """
        if reduction not in ELBO_REDUCTIONS:
            raise ValueError(f"VAE.negative_elbo: reduction must be one of {ELBO_REDUCTIONS}, got {reduction!r}")
        loss = -self.elbo(x, rng, samples, estimator, kl_weight)
        return loss.mean() if reduction == "mean" else loss

    # ----------------------------------------------------------------- evaluation
    @no_grad()
    def importance_weighted_log_likelihood(self, x, rng, k: int = 5000, chunk: int = 500) -> np.ndarray:
        """log p(x) ≈ log (1/k) Σ_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x), per example (float64, shape (batch,)).

        The importance-sampled estimate of the paper's marginal likelihood: ``importance_weighted_bound``
        (the training objective's formula) of k log-weights, a lower bound in expectation that rises
        with k towards log p(x). The k samples are drawn ``chunk`` at a time, in order, and the chunks
        are scored on every core (one chunk per core at a time, so memory holds chunk × batch ×
        input_dim decoder outputs per core); the log-weights (k × batch) are gathered in float64 in
        order and the bound taken once over all of them, so the result does not depend on the number
        of cores.
        """
        for name, value in (("k", k), ("chunk", chunk)):
            if not is_positive_int(value):
                raise ValueError(f"VAE.importance_weighted_log_likelihood: {name} must be a positive int, "
                                 f"got {value!r}")
        rng = as_generator(rng, "VAE.importance_weighted_log_likelihood")
        x = self._as_data(x, "VAE.importance_weighted_log_likelihood", check_range=False)
        posterior = DiagonalGaussian(*self._encode(x))

        @no_grad()  # in a worker thread too (the grad mode is per thread)
        def log_weights_of(z):
            return log_importance_weight(self.reconstruction_log_likelihood(x, z), self.log_prior(z),
                                         posterior.log_prob(z)).data

        draws = (posterior.sample(rng, samples=min(chunk, k - start)) for start in range(0, k, chunk))
        log_weights, start = np.empty((k, x.shape[0])), 0
        for part in _in_order_on_every_core(log_weights_of, draws):
            log_weights[start:start + len(part)] = part
            start += len(part)
        return importance_weighted_bound(Tensor(log_weights)).data

    @no_grad()
    def reconstruct(self, x) -> np.ndarray:
        """The decoder's probabilities at the posterior mean, shape (batch, input_dim)."""
        mu, _ = self.encode(x)
        return self.decode(mu).sigmoid().data

    @no_grad()
    def sample(self, n: int, rng) -> np.ndarray:
        """The decoder's probabilities for n draws z ~ N(0, I), shape (n, input_dim)."""
        if not is_positive_int(n):
            raise ValueError(f"VAE.sample: n must be a positive int, got {n!r}")
        return self.decode(self.prior.sample(rng, samples=n)).sigmoid().data
