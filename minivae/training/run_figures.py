"""The figures a run writes into its folder after every epoch, and the check that they are complete."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine import no_grad
from ..figures import labelled_reconstructions, labelled_samples, loss_plot, manifold_grid, png_problem, write_png
from ..vae import VAE
from .config import FIGURES, MANIFOLD, generator


def write_figures(out: Path, model: VAE, targets: np.ndarray, history: list, seed: int) -> None:
    """reconstructions.png (rows of held-out digits, labelled "original", above their
    "reconstruction"), samples.png (64 draws from the prior), both upscaled three times; loss.png
    (train and held-out negative ELBO in nats per digit against the epoch) and, for 2 latent
    dimensions, manifold.png."""
    originals = targets[:16]
    columns = 8 if len(originals) % 8 == 0 else len(originals)
    write_png(out / FIGURES[0], labelled_reconstructions(originals, model.reconstruct(originals), columns))
    write_png(out / FIGURES[1], labelled_samples(model.sample(64, generator(seed, "figures"))))
    epochs = [m["epoch"] for m in history]
    write_png(out / FIGURES[2], loss_plot({"train": (epochs, [m["train_neg_elbo"] for m in history]),
                                           "held-out": (epochs, [m["test_neg_elbo"] for m in history])},
                                          title="negative elbo per epoch"))
    if model.latent_dim == 2:
        with no_grad():
            write_png(out / MANIFOLD, manifold_grid(lambda z: model.decode(z).sigmoid().data))


def figure_names(latent_dim: int) -> tuple:
    """The figures a run with ``latent_dim`` latent dimensions writes."""
    return FIGURES + ((MANIFOLD,) if latent_dim == 2 else ())


def figure_problems(out: Path, latent_dim: int) -> dict:
    """{name: why it is not a complete PNG} for the run's figures in ``out`` that are missing or broken."""
    return {name: problem for name in figure_names(latent_dim) if (problem := png_problem(out / name))}
