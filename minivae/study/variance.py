"""The variance study: how noisy each estimator of the encoder's ELBO gradient is, for S samples of z,
at initialisation and after a short training (``fit_vae``), as a Markdown table and a plot.

Four unbiased estimators of ∇_φ L (``GRADIENT_ESTIMATORS``): the score function, the score function
with a baseline, and the two SGVB estimators of Kingma & Welling, named as ``minivae train
--estimator`` names them: "monte-carlo" (the paper's SGVB-A, eq. 6: Monte Carlo KL) and
"closed-form" (SGVB-B, eq. 7: closed-form KL). The figure of the study is ``variance_plot``
(matplotlib, the ``plot`` extra).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import as_generator, is_positive_int
from ..engine import no_grad
from ..figures import line_plot
from ..optim import Adam
from .estimators import GRADIENT_ESTIMATORS, elbo_estimate, encoder_gradient


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
        if estimator == "closed-form" and family != "gaussian":
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


def variance_plot(rows, estimators):
    """The study's figure, a matplotlib ``Figure`` of 760 × 400 pixels: the variance per parameter
    against the samples S per digit, on log-log axes, one panel per state, one line per estimator
    (in the legend in the order of ``estimators``); a slope of -1 is variance falling as 1/S.

    ``rows`` are ``VarianceRow``s. No rows raises ``ValueError``; no matplotlib ``PlotsUnavailable``.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("variance_plot: no rows to draw")
    panels = {}
    for state in dict.fromkeys(r.state for r in rows):
        for estimator in estimators:
            line = sorted((r.samples, r.variance) for r in rows if r.state == state and r.estimator == estimator)
            if line:
                panels.setdefault(state, {})[estimator] = ([s for s, _ in line], [v for _, v in line])
    return line_plot(panels, title="gradient variance per parameter against the samples S of z",
                     x_label="samples S per digit", y_label="variance per parameter", log=True,
                     width=760, height=400, legend="outside lower center")
