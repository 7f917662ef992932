"""Measuring a model on the run's held-out digits (negative ELBO; importance-weighted −log p(x)), and
sampling a checkpoint's model.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..data import load_mnist
from ..engine import no_grad
from ..figures import DIGIT_SCALE, digit_grid, write_png
from ..files import refuse_overwriting_input
from ..vae import VAE
from .checkpoint import load_checkpoint
from .config import TrainConfig, generator, held_out_targets, likelihood
from .progress import COMPILE_NOTE, Progress, bar as _bar, kernels_need_compiling

EVALUATION_BATCH = 500      # held-out digits per negative-ELBO evaluation
IW_CHUNK = 500              # importance samples per digit drawn at once
IW_SAMPLES_PER_CALL = 8000  # digits × samples per call: bounds the decoder outputs held in memory


def held_out_negative_elbo(model: VAE, targets: np.ndarray, config: TrainConfig) -> float:
    """The mean negative ELBO per held-out digit in nats, under ``no_grad``, in batches.

    It uses the run's own estimator and sample count, with a freshly seeded "evaluation" generator.
    """
    rng = generator(config.seed, "evaluation")
    model.eval()
    total = 0.0
    with no_grad():
        for start in range(0, len(targets), EVALUATION_BATCH):
            batch = targets[start:start + EVALUATION_BATCH]
            losses = model.negative_elbo(batch, rng, config.samples, config.estimator, reduction="none")
            total += float(losses.data.sum(dtype=np.float64))
    model.train()
    return total / len(targets)


def evaluate_checkpoint(path, iw_samples: int = 5000, data_dir=None, seed: int = 0, stream=None) -> dict:
    """Held-out negative ELBO, importance-weighted −log p(x) with ``iw_samples`` samples, and their gap.

    The held-out digits are those of the run (its data directory unless ``data_dir`` is given, its
    binarization); the negative ELBO uses the run's evaluation generator, as during training, and
    the importance sampling a generator seeded with ``seed``. Digits go through the model a few at
    a time and the samples in chunks, so memory stays bounded; progress goes to ``stream``.
    A checkpoint that is unreadable or inconsistent (non-finite weights, ...) raises ``CheckpointError``.
    """
    run = load_checkpoint(path)
    data = load_mnist(data_dir if data_dir is not None else run.config.data_dir)
    targets = held_out_targets(data, run.config)
    progress = Progress(stream)
    if kernels_need_compiling():
        progress.line(COMPILE_NOTE)
    negative_elbo = held_out_negative_elbo(run.model, targets, run.config)
    rng = np.random.default_rng(seed)
    chunk = min(iw_samples, IW_CHUNK)
    digits_per_call = max(1, IW_SAMPLES_PER_CALL // chunk)
    log_likelihoods = []
    try:
        for start in range(0, len(targets), digits_per_call):
            batch = targets[start:start + digits_per_call]
            log_likelihoods.append(run.model.importance_weighted_log_likelihood(batch, rng, k=iw_samples,
                                                                                chunk=chunk))
            progress.update(lambda: f"importance sampling {_bar(start + len(batch), len(targets))} digits, "
                                    f"k={iw_samples}")
    finally:
        progress.end()
    negative_log_likelihood = -float(np.concatenate(log_likelihoods).mean())
    return {"checkpoint": str(path), "epoch": run.state.epoch, "step": run.state.step, "data": data.source,
            "likelihood": likelihood(run.config.binarize), "held_out_digits": len(targets),
            "negative_elbo": negative_elbo, "iw_samples": iw_samples,
            "iw_negative_log_likelihood": negative_log_likelihood, "gap": negative_elbo - negative_log_likelihood}


def sample_checkpoint(path, n: int = 64, out="samples.png", seed: int = 0) -> Path:
    """Write a grid of ``n`` digits decoded from z ~ N(0, I) by the model at ``path`` (atomically),
    upscaled ``DIGIT_SCALE`` times.

    ``out`` being the checkpoint itself raises ``ValueError``.
    """
    refuse_overwriting_input(out, [path], "sample")
    model = load_checkpoint(path).model
    digits = model.sample(n, np.random.default_rng(seed))
    return write_png(out, digit_grid(digits, columns=math.ceil(math.sqrt(n)), scale=DIGIT_SCALE))
