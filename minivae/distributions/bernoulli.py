"""Independent Bernoulli variables: the VAE's likelihood p(x|z) for intensities in [0, 1]."""
from __future__ import annotations

from .. import functions
from ..engine import Tensor, no_grad, sigmoid
from ..checks import as_float_tensor, as_generator
from .gaussian import check_event_size


class Bernoulli:
    """P(x_j = 1) = σ(logits_j), independently over the last axis (the event)."""

    def __init__(self, logits):
        self.logits = as_float_tensor(logits, "Bernoulli", "logits")
        if self.logits.ndim == 0:
            raise ValueError("Bernoulli: logits need at least one axis, the event")

    @property
    def probs(self) -> Tensor:
        """σ(logits)."""
        return sigmoid(self.logits)

    def log_prob(self, x) -> Tensor:
        """log p(x) = Σ_j [x_j log σ(l_j) + (1 − x_j) log(1 − σ(l_j))] = −Σ_j BCE(l_j, x_j), over the last
        axis.

        ``x`` may be any value in [0, 1] (a grey level is a soft target, as for MNIST intensities);
        logits of shape (S, *batch, d) score x of shape (*batch, d).
        """
        x = as_float_tensor(x, "Bernoulli.log_prob", "x", dtype=self.logits.dtype)
        check_event_size("Bernoulli.log_prob", "x", x.shape, self.logits.shape[-1])
        return functions.bernoulli_log_prob(self.logits, x)

    def sample(self, rng) -> Tensor:
        """Draws of 0s and 1s in the logits' dtype (no graph)."""
        uniform = as_generator(rng, "Bernoulli.sample").random(self.logits.shape, dtype=self.logits.dtype)
        with no_grad():
            probs = self.probs.data
        return Tensor((uniform < probs).astype(self.logits.dtype))
