"""Two Monte Carlo estimators of ∇_φ E_{q_φ(z)}[f(z)], and the measurement of their variance.

The score-function (log-derivative, REINFORCE) estimator of Kingma & Welling §2.2 uses
∇_φ q_φ = q_φ ∇_φ log q_φ:

    ∇_φ E_q[f(z)] = E_q[(f(z) − b) ∇_φ log q_φ(z)] ≈ (1/S) Σ_s (f(z_s) − b_s) ∇_φ log q_φ(z_s),

for any baseline b that does not depend on z_s (E_q[∇_φ log q_φ] = 0). The reparameterization
estimator of §2.3 writes z = g_φ(ε) with noise ε ~ p(ε) free of φ and differentiates through g:

    ∇_φ E_q[f(z)] = E_ε[∇_φ f(g_φ(ε))] ≈ (1/S) Σ_s ∇_φ f(g_φ(ε_s)).

Both are unbiased; ``variance_study`` measures how far apart their variances are for the VAE's
encoder, along with those of the two SGVB estimators of the ELBO (paper eqs. 6 and 7).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checks import as_generator, is_positive_int
from .distributions import DiagonalGaussian, Logistic
from .engine import Tensor, no_grad
from .engine import gradients as engine_gradients
from .optim import Adam
from .vae import log_importance_weight


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
GRADIENT_ESTIMATORS = ("score-function", "score-function+baseline", "SGVB-A", "SGVB-B")


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
    "SGVB-A" (eq. 6): the reparameterization estimator of the same expectation.
    "SGVB-B" (eq. 7): the reparameterization estimator of E_q[log p(x|z)], plus the exact gradient
    of −KL(q ‖ p(z)) (Gaussian posterior only).
    """
    if estimator not in GRADIENT_ESTIMATORS:
        raise ValueError(f"encoder_gradient: estimator must be one of {GRADIENT_ESTIMATORS}, got {estimator!r}")
    if (estimator == "score-function+baseline") != (baseline is not None):
        raise ValueError(f"encoder_gradient: a baseline goes with 'score-function+baseline' only, got estimator "
                         f"{estimator!r} with baseline {'given' if baseline is not None else 'None'}")
    if estimator == "SGVB-B" and family != "gaussian":
        raise ValueError(f"encoder_gradient: SGVB-B needs the closed-form KL of the Gaussian posterior, got {family!r}")
    params = encoder_parameters(vae)
    q = approximate_posterior(vae, x, family)
    batch = len(x)
    if estimator.startswith("score-function"):
        return score_function_gradient(lambda z: log_weight(vae, x, q, z) / batch, q, params, rng, samples,
                                       None if baseline is None else np.asarray(baseline) / batch)
    if estimator == "SGVB-A":
        return reparameterization_gradient(lambda z: log_weight(vae, x, q, z) / batch, q, params, rng, samples)
    reconstruction = reparameterization_gradient(lambda z: vae.reconstruction_log_likelihood(x, z) / batch,
                                                 q, params, rng, samples)
    kl = gradients(q.kl_divergence().sum() / batch, params)
    return [g - k for g, k in zip(reconstruction, kl)]


def elbo_estimate(vae, x, rng, samples: int = 1, family: str = "gaussian") -> Tensor:
    """The ELBO per data point from ``samples`` reparameterized draws, shape (batch,): SGVB-B
    (closed-form KL) for the Gaussian posterior, SGVB-A for the others."""
    if family == "gaussian":
        return vae.elbo(x, rng, samples, estimator="closed-form")
    q = approximate_posterior(vae, x, family)
    return log_weight(vae, x, q, q.rsample(rng, samples)).mean(axis=0)


def fit_vae(vae, images: np.ndarray, rng, steps: int, batch_size: int = 100, family: str = "gaussian",
            lr: float = 1e-3) -> list[float]:
    """Adam on the negative ELBO (one sample per data point) over random minibatches of ``images``.

    Returns the minibatch ELBO of each step.
    """
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if not is_positive_int(value):
            raise ValueError(f"fit_vae: {name} must be a positive int, got {value!r}")
    rng = as_generator(rng, "fit_vae")
    optimizer = Adam(vae.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        x = images[rng.integers(0, len(images), batch_size)]
        optimizer.zero_grad()
        elbo = elbo_estimate(vae, x, rng, 1, family).mean()
        (-elbo).backward()
        optimizer.step()
        history.append(elbo.item())
    return history


# ------------------------------------------------------------------------------ variance
def gradient_moments(estimate, repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """The per-parameter mean and variance (ddof=1, float64) of ``repeats`` calls of ``estimate()``,
    which returns a list of gradient arrays; all arrays are flattened into one vector."""
    if not is_positive_int(repeats) or repeats < 2:
        raise ValueError(f"gradient_moments: repeats must be an int >= 2, got {repeats!r}")
    draws = np.stack([np.concatenate([g.ravel() for g in estimate()]).astype(np.float64) for _ in range(repeats)])
    return draws.mean(axis=0), draws.var(axis=0, ddof=1)


@dataclass(frozen=True)
class VarianceRow:
    """One measurement of an estimator with S samples: ``variance`` is the per-entry variance of its
    gradient averaged over φ's entries, ``mean_squared_gradient`` the average of E[g]²."""

    state: str
    estimator: str
    samples: int
    variance: float
    mean_squared_gradient: float

    @property
    def signal_to_noise(self) -> float:
        """√(mean over entries of E[g]²) / √(mean variance): how much of a step is signal (0 when the
        estimate of E[g]², which subtracts the noise of the mean, comes out negative)."""
        return float(np.sqrt(max(self.mean_squared_gradient, 0.0) / self.variance))


def variance_study(vae, x, rng, state: str, sample_sizes=(1, 10, 100), repeats: int = 20,
                   family: str = "gaussian", pilot_samples: int = 100) -> list[VarianceRow]:
    """Measure every applicable estimator of ``GRADIENT_ESTIMATORS`` for each S in ``sample_sizes``.

    The baseline of "score-function+baseline" is an independent estimate of each data point's
    ELBO from ``pilot_samples`` draws, fixed across repeats, so it keeps the estimator unbiased.
    """
    rng = as_generator(rng, "variance_study")
    with no_grad():
        baseline = elbo_estimate(vae, x, rng, pilot_samples, family).data
    rows = []
    for estimator in GRADIENT_ESTIMATORS:
        if estimator == "SGVB-B" and family != "gaussian":
            continue
        chosen = baseline if estimator == "score-function+baseline" else None
        for samples in sample_sizes:
            mean, variance = gradient_moments(
                lambda: encoder_gradient(vae, x, estimator, rng, samples, family, chosen), repeats)
            # E[ḡ²] = E[g]² + Var[g]/R: subtract the second term for an unbiased estimate of E[g]²
            signal = float((mean ** 2 - variance / repeats).mean())
            rows.append(VarianceRow(state, estimator, int(samples), float(variance.mean()), signal))
    return rows


def variance_table(rows) -> str:
    """A Markdown table: one line per estimator and S, one column group per state."""
    rows = list(rows)
    states = list(dict.fromkeys(r.state for r in rows))
    by_key = {(r.state, r.estimator, r.samples): r for r in rows}
    header = ["estimator", "S"] + [f"{column} ({state})" for state in states
                                   for column in ("variance", "SNR")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for estimator, samples in dict.fromkeys((r.estimator, r.samples) for r in rows):
        cells = [estimator, str(samples)]
        for state in states:
            row = by_key.get((state, estimator, samples))
            cells += ["" , ""] if row is None else [f"{row.variance:.3e}", f"{row.signal_to_noise:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


PLOT_COLOURS = ("#d62728", "#ff7f0e", "#1f77b4", "#2ca02c")  # one per estimator of GRADIENT_ESTIMATORS


def variance_plot(rows, width: int = 760, height: int = 360) -> str:
    """An SVG figure: log₁₀ variance against log₁₀ S, one panel per state, one line per estimator."""
    rows = list(rows)
    if not rows:
        raise ValueError("variance_plot: no rows to draw")
    states = list(dict.fromkeys(r.state for r in rows))
    log_s = np.log10([r.samples for r in rows])
    log_v = np.log10([r.variance for r in rows])
    s_range = (log_s.min() - 0.1, log_s.max() + 0.1)
    v_range = (np.floor(log_v.min()), np.ceil(log_v.max()))
    if v_range[0] == v_range[1]:
        v_range = (v_range[0] - 1, v_range[1] + 1)
    legend_height, margin_left, margin_bottom, gap = 28, 64, 40, 30
    panel_width = (width - margin_left - gap * len(states)) / len(states)
    panel_top, panel_height = legend_height + 20, height - legend_height - 20 - margin_bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">', f'<rect width="{width}" height="{height}" fill="white"/>']
    x = margin_left
    for estimator, colour in zip(GRADIENT_ESTIMATORS, PLOT_COLOURS):
        parts.append(f'<line x1="{x}" y1="14" x2="{x + 24}" y2="14" stroke="{colour}" stroke-width="3"/>'
                     f'<text x="{x + 30}" y="18">{estimator}</text>')
        x += 30 + 7 * len(estimator) + 24
    for i, state in enumerate(states):
        left = margin_left + i * (panel_width + gap)

        def point(s, v):
            return (left + (s - s_range[0]) / (s_range[1] - s_range[0]) * panel_width,
                    panel_top + (v_range[1] - v) / (v_range[1] - v_range[0]) * panel_height)
        parts.append(f'<rect x="{left:.1f}" y="{panel_top}" width="{panel_width:.1f}" height="{panel_height}" '
                     f'fill="none" stroke="black"/>'
                     f'<text x="{left + panel_width / 2:.1f}" y="{panel_top - 6}" text-anchor="middle">{state}</text>')
        for decade in range(int(v_range[0]), int(v_range[1]) + 1):
            _, y = point(s_range[0], decade)
            parts.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{left + panel_width:.1f}" y2="{y:.1f}" '
                         f'stroke="#dddddd"/>')
            if i == 0:
                parts.append(f'<text x="{left - 4:.1f}" y="{y + 4:.1f}" text-anchor="end">1e{decade}</text>')
        for samples in sorted({r.samples for r in rows}):
            x, _ = point(np.log10(samples), v_range[0])
            parts.append(f'<text x="{x:.1f}" y="{panel_top + panel_height + 16}" text-anchor="middle">S={samples}</text>')
        for estimator, colour in zip(GRADIENT_ESTIMATORS, PLOT_COLOURS):
            line = sorted((r.samples, r.variance) for r in rows if r.state == state and r.estimator == estimator)
            if not line:
                continue
            points = [point(np.log10(s), np.log10(v)) for s, v in line]
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                         + " ".join(f"{x:.1f},{y:.1f}" for x, y in points) + '"/>')
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in points]
    parts.append(f'<text x="14" y="{panel_top + panel_height / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 14 {panel_top + panel_height / 2:.1f})">variance per parameter</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
