"""``minivae estimators``: the variance of the encoder-gradient estimators, before and after training.

For the encoder φ of a VAE at initialisation and after training, and for S samples of z per data
point, the command repeats each estimator of ∇_φ L on one fixed minibatch of held-out digits and
reports the variance of each entry of φ's gradient, averaged over the entries, with the
signal-to-noise ratio √(mean E[g]²) / √(mean Var[g]). It writes into ``--out``:

- ``variance.md``: the table and the settings that produced it;
- ``variance.json``: the same measurements, one object per row;
- ``variance.png``: log variance against log S, one panel per state (drawn with matplotlib, the
  ``plot`` extra; without it the command says so on one line and writes the rest).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..data import load_mnist
from ..figures import note_plots_missing, plots_available, save_png
from ..files import make_directory, write_bytes
from ..study.estimators import GRADIENT_ESTIMATORS, POSTERIORS
from ..study.variance import fit_vae, variance_plot, variance_study, variance_table
from ..training import load_checkpoint, read_checkpoint_config
from ..vae import VAE
from .arguments import UsageError, non_negative_int, path, positive_int, require_memory, vae_activations, vae_parameters

TABLE, ROWS, PLOT = "variance.md", "variance.json", "variance.png"
PIXELS, HELD_OUT = 28 * 28, 10_000   # MNIST's digits and its largest held-out set


def register(subparsers) -> None:
    """Add the ``estimators`` command."""
    parser = subparsers.add_parser(
        "estimators", help="measure the gradient variance of the score-function and SGVB estimators",
        description="Measure, for a VAE's encoder at initialisation and after training, the per-parameter "
                    "variance of four unbiased estimators of the ELBO's gradient (score function, score "
                    "function with a baseline, and the SGVB estimators monte-carlo and closed-form, the paper's "
                    "SGVB-A and SGVB-B) for each number of samples S; write "
                    f"{TABLE}, {ROWS} and (with matplotlib) {PLOT} into --out.")
    parser.add_argument("--posterior", choices=POSTERIORS, default="gaussian",
                        help="approximate posterior: the Gaussian (location-scale transform) or the logistic "
                             "(inverse CDF; no closed-form KL, so no closed-form estimator) (default: gaussian)")
    parser.add_argument("--samples", type=positive_int, nargs="+", default=[1, 10, 100], metavar="S",
                        help="samples of z per digit (default: 1 10 100)")
    parser.add_argument("--repeats", type=positive_int, default=20,
                        help="independent estimates per variance, at least 2 (default: 20)")
    parser.add_argument("--batch", type=positive_int, default=32,
                        help="held-out digits in the measured minibatch (default: 32)")
    parser.add_argument("--hidden", type=positive_int, default=200,
                        help="hidden width of encoder and decoder (default: 200)")
    parser.add_argument("--latent-dim", type=positive_int, default=10, help="dimensions of z (default: 10)")
    parser.add_argument("--train-steps", type=positive_int, default=600,
                        help="Adam steps of 100 digits for the trained state (default: 600)")
    parser.add_argument("--checkpoint", type=path, metavar="CHECKPOINT",
                        help="measure this checkpoint.npz (from minivae train) as the trained state instead of "
                             "training; the initial state is a fresh VAE of its shape")
    parser.add_argument("--data-dir", type=path, metavar="DIR", help="MNIST directory (default: the embedded digits)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of every random draw (default: 0)")
    parser.add_argument("--out", type=path, default="runs/estimators", metavar="DIR",
                        help="output directory (default: runs/estimators)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    if args.repeats < 2:
        raise UsageError("minivae estimators: error: --repeats must be at least 2 to measure a variance")
    if args.checkpoint and args.posterior != "gaussian":
        raise UsageError("minivae estimators: error: a checkpoint holds a VAE trained with the Gaussian posterior; "
                         "--posterior logistic needs the training of this command")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"minivae estimators: error: --out {out} is not a directory")
    _require_memory(args)
    make_directory(out, "the output folder")
    started = time.perf_counter()
    seeds = np.random.SeedSequence(args.seed).spawn(3)  # initialisation, training, measurement
    data = load_mnist(args.data_dir)
    x = data.test_images[:args.batch]
    if args.checkpoint:
        trained = load_checkpoint(args.checkpoint).model
        initial = VAE(**trained.config, rng=np.random.default_rng(seeds[0]))
        training = f"checkpoint {args.checkpoint}"
    else:
        initial = VAE(x.shape[1], (args.hidden,), args.latent_dim, rng=np.random.default_rng(seeds[0]))
        trained = VAE(**initial.config)
        trained.load_state_dict(initial.state_dict())
        _log(f"training: {args.train_steps} steps of 100 digits ({args.posterior} posterior) ...")
        clock = time.perf_counter()
        history = fit_vae(trained, data.train_images, np.random.default_rng(seeds[1]), args.train_steps,
                          family=args.posterior)
        training = (f"{args.train_steps} Adam steps of 100 digits in {time.perf_counter() - clock:.1f} s, "
                    f"minibatch ELBO {history[0]:.1f} -> {np.mean(history[-20:]):.1f} nats")
        _log(f"training: done, {training}")
    rng = np.random.default_rng(seeds[2])
    rows, seconds = [], {}
    for state, vae in (("init", initial), ("trained", trained)):
        _log(f"measuring: {state} ...")
        clock = time.perf_counter()
        rows += variance_study(vae, x, rng, state, args.samples, args.repeats, args.posterior)
        seconds[state] = time.perf_counter() - clock
    total = time.perf_counter() - started

    table = variance_table(rows)
    settings = (f"VAE {initial.input_dim}-{'-'.join(map(str, initial.hidden))}-{initial.latent_dim}, "
                f"{args.posterior} posterior, the first {len(x)} held-out digits ({data.source}), "
                f"{args.repeats} repeats per variance, seed {args.seed}; trained state: {training}; "
                f"measured in {seconds['init']:.1f} s (init) and {seconds['trained']:.1f} s (trained), "
                f"{total:.1f} s in all.")
    written = [write_bytes(out / TABLE, f"{table}\n\n{settings}\n".encode()),
               write_bytes(out / ROWS, (json.dumps([asdict(r) for r in rows], indent=1) + "\n").encode())]
    if plots_available():
        written.append(save_png(variance_plot(rows, GRADIENT_ESTIMATORS), out / PLOT))
    else:
        note_plots_missing(PLOT)
    print(table)
    print(f"\n{settings}\nwrote " + ", ".join(map(str, written)))
    return 0


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _require_memory(args) -> None:
    """Stop at once if the flags ask for more memory than there is: a lower bound of what the
    command holds together, the VAE's parameters with their gradients and Adam's moments, the
    float64 gradients of the encoder kept for every repeat, and one estimate's activations."""
    if args.checkpoint:
        config = read_checkpoint_config(args.checkpoint)
        hidden, latent_dim = config.hidden, config.latent_dim
    else:
        hidden, latent_dim = (args.hidden,), args.latent_dim
    parameters = vae_parameters(PIXELS, hidden, latent_dim)
    encoder = vae_parameters(PIXELS, hidden, latent_dim, encoder_only=True)
    rows = max(args.samples) * min(args.batch, HELD_OUT)
    needed = 16 * parameters + 8 * args.repeats * encoder + 8 * vae_activations(PIXELS, hidden, latent_dim, rows)
    asked = (f"--hidden {' '.join(map(str, hidden))} --latent-dim {latent_dim} --samples {max(args.samples)} "
             f"--batch {args.batch} --repeats {args.repeats}")
    require_memory("estimators", needed, asked)
