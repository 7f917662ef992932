"""A training run's settings, its random streams, and the names of the files it writes.

Every random draw of a run comes from its seed through one of four independent generators:
"training" (initialization, shuffling, binarization, the reparameterization noise), "evaluation"
(restarted for every evaluation, so the held-out loss of two epochs sees the same noise),
"held-out" (the fixed binarization of the held-out digits) and "figures".
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..checks import is_positive_int
from ..data import MnistSplit
from ..nn import ACTIVATIONS
from ..vae import ESTIMATORS

CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"
FIGURES = ("reconstructions.png", "samples.png", "loss.png")
MANIFOLD = "manifold.png"   # only for a 2-D latent space
STREAMS = ("training", "evaluation", "held-out", "figures")


@dataclass(frozen=True)
class TrainConfig:
    """What a run trains and how; ``epochs`` is the total, counting epochs before a resume.

    ``activation`` follows every hidden layer (a name of ``minivae.nn.ACTIVATIONS``); ``kl_warmup``
    is the number of epochs over which KL warm-up's weight rises from 0 to 1 (0: none; ``kl_weight``).
    """

    epochs: int = 10
    batch_size: int = 128
    latent_dim: int = 20
    hidden: tuple = (400,)
    lr: float = 1e-3
    samples: int = 1
    estimator: str = "closed-form"
    binarize: bool = False
    seed: int = 0
    data_dir: str | None = None
    activation: str = "relu"
    kl_warmup: int = 0

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if self.data_dir is not None:  # absolute, so that a resume from another directory finds it
            object.__setattr__(self, "data_dir", str(Path(self.data_dir).resolve()))
        for name in ("epochs", "batch_size", "latent_dim", "samples"):
            if not is_positive_int(getattr(self, name)):
                raise ValueError(f"TrainConfig: {name} must be an int >= 1, got {getattr(self, name)!r}")
        if not self.hidden or not all(is_positive_int(width) for width in self.hidden):
            raise ValueError(f"TrainConfig: hidden must be one or more ints >= 1, got {self.hidden!r}")
        if not (isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0):
            raise ValueError(f"TrainConfig: seed must be an int >= 0, got {self.seed!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"TrainConfig: lr must be a finite number > 0, got {self.lr!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"TrainConfig: activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if not (isinstance(self.kl_warmup, int) and not isinstance(self.kl_warmup, bool) and self.kl_warmup >= 0):
            raise ValueError(f"TrainConfig: kl_warmup must be an int >= 0 (epochs), got {self.kl_warmup!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"TrainConfig: estimator must be one of {ESTIMATORS}, got {self.estimator!r}")

    def to_json(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden)}


def kl_weight(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """KL warm-up's weight β for the optimizer step after ``step`` completed ones: min(1, step / (W·B)).

    W = ``config.kl_warmup`` epochs of B = ``steps_per_epoch`` steps: β rises linearly from 0 at the
    first step to 1 after W epochs (Bowman et al. 2016; Sønderby et al. 2016), and is 1 without
    warm-up. The objective is then E_q[log p(x|z)] − β·KL(q(z|x) ‖ p(z)) (``VAE.elbo``'s kl_weight).
    """
    if config.kl_warmup == 0:
        return 1.0
    return min(1.0, step / (config.kl_warmup * steps_per_epoch))


def likelihood(binarize: bool) -> str:
    """What a run's nats per digit measure: the decoder's Bernoulli likelihood of grey-level
    intensities (the default, as pytorch/examples trains) or of binarized digits.

    Only the second is comparable with the negative log-likelihood of binarized MNIST that papers
    report (e.g. 86.76 nats for a one-layer VAE in Burda et al.'s IWAE paper, table 1).
    """
    if binarize:
        return ("Bernoulli likelihood of binarized digits (training digits drawn afresh each epoch, held-out "
                "digits once, fixed by the seed)")
    return ("Bernoulli likelihood of grey-level intensities (not the -log p(x) of binarized MNIST that papers "
            "report; train with --binarize for that)")


def generator(seed: int, stream: str) -> np.random.Generator:
    """The run's independent generator for ``stream``, one of ``STREAMS``, from its seed."""
    return np.random.default_rng([seed, STREAMS.index(stream)])


def bernoulli_sample(intensities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Binary digits x ~ Bernoulli(intensity), pixel by pixel, of the same dtype."""
    return (rng.random(intensities.shape, dtype=intensities.dtype) < intensities).astype(intensities.dtype)


def held_out_targets(data: MnistSplit, config: TrainConfig) -> np.ndarray:
    """The held-out digits the run is evaluated on: intensities, or one fixed binarization of them."""
    if config.binarize:
        return bernoulli_sample(data.test_images, generator(config.seed, "held-out"))
    return data.test_images
