"""The figures a run writes into its folder after every epoch, and the check that they are complete.

The digit grids are images written by minivae's PNG writer; the loss curve is a plot, drawn with
matplotlib (the ``plot`` extra). Without matplotlib a run writes no loss.png, says so once, and
does not count it among its figures.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine import no_grad
from ..figures import (DIGIT_SCALE, digit_grid, line_plot, manifold_grid, note_plots_missing, plots_available,
                       png_problem, reconstruction_grid, save_png, write_png)
from ..vae import VAE
from .config import FIGURES, MANIFOLD, generator

RECONSTRUCTIONS, SAMPLES, LOSS = FIGURES


def write_figures(out: Path, model: VAE, targets: np.ndarray, history: list, seed: int) -> None:
    """Write the run's figures into ``out``, each atomically: reconstructions.png (pairs of rows:
    held-out digits above their reconstructions), samples.png (64 draws from the prior), both
    upscaled ``DIGIT_SCALE`` times; for 2 latent dimensions manifold.png; and loss.png
    (``loss_plot``), or without matplotlib a one-line note, once per process, on stderr."""
    originals = targets[:16]
    columns = 8 if len(originals) % 8 == 0 else len(originals)
    write_png(out / RECONSTRUCTIONS,
              reconstruction_grid(originals, model.reconstruct(originals), columns, scale=DIGIT_SCALE))
    write_png(out / SAMPLES, digit_grid(model.sample(64, generator(seed, "figures")), scale=DIGIT_SCALE))
    if model.latent_dim == 2:
        with no_grad():
            write_png(out / MANIFOLD, manifold_grid(lambda z: model.decode(z).sigmoid().data))
    if plots_available():
        save_png(loss_plot(history), out / LOSS)
    else:
        note_plots_missing(LOSS)


def loss_plot(history: list):
    """The matplotlib figure of the train and held-out negative ELBO (nats per digit) against the
    epoch, from the run's metrics (``history``: one dict per epoch with "epoch", "train_neg_elbo"
    and "test_neg_elbo")."""
    epochs = [m["epoch"] for m in history]
    return line_plot({"": {"train": (epochs, [m["train_neg_elbo"] for m in history]),
                           "held-out": (epochs, [m["test_neg_elbo"] for m in history])}},
                     title="negative ELBO per epoch", x_label="epoch", y_label="nats per digit")


def figure_names(latent_dim: int, present_in: Path | None = None) -> tuple:
    """The figures a run with ``latent_dim`` latent dimensions writes (loss.png only where matplotlib is);
    with ``present_in``, those of them in that folder (a file or a symbolic link, even a broken one)."""
    names = _every_name(latent_dim)
    if present_in is not None:
        names = tuple(name for name in names if (present_in / name).exists() or (present_in / name).is_symlink())
    return _written(names)


def figure_problems(out: Path, latent_dim: int) -> dict:
    """{name: why it is not a complete PNG} for the run's figures in ``out`` that are missing or broken."""
    problems = {name: problem for name in _every_name(latent_dim) if (problem := png_problem(out / name))}
    return {name: problems[name] for name in _written(tuple(problems))}


def _every_name(latent_dim: int) -> tuple:
    return FIGURES + ((MANIFOLD,) if latent_dim == 2 else ())


def _written(names: tuple) -> tuple:
    """``names`` without loss.png where matplotlib cannot be imported. matplotlib is imported only when
    loss.png is among them: importing it takes longer than a warm process's first step, and neither a
    new run (its folder holds no loss.png) nor the resume of a run with its figures intact waits for it."""
    if LOSS not in names or plots_available():
        return names
    return tuple(name for name in names if name != LOSS)
