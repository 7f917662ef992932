"""``minivae train``: train a VAE, or continue a stopped run with ``--resume``."""
from __future__ import annotations

import signal
import sys
import time
from dataclasses import fields
from pathlib import Path

from ..files import DiskFullError
from ..nn import ACTIVATIONS
from ..training import CHECKPOINT, EVALUATION_BATCH, TrainConfig, read_checkpoint_config, train
from ..training.runlock import new_run_folder
from ..vae import ESTIMATORS
from .arguments import (EXIT_INTERRUPTED, EXIT_SIGNAL_BASE, UsageError, non_negative_int, path, positive_float,
                        positive_int, require_memory, vae_activations, vae_parameters)

PIXELS = 28 * 28
MOST_DIGITS = 60_000   # MNIST's training set: no batch holds more


def register(subparsers) -> None:
    """Add the ``train`` command."""
    parser = subparsers.add_parser(
        "train", help="train a VAE (with no flags: the default model on the embedded digits, offline)",
        description="Train a VAE on MNIST and write metrics.jsonl, checkpoint.npz and figures into --out. "
                    "Ctrl-C and SIGTERM save a checkpoint (exit 130 and 143); --resume continues it exactly. With "
                    "--resume, the other settings come from the checkpoint; --epochs may raise the total, and "
                    "--data-dir may name the run's data in a new place (checked by checksum).")
    defaults = TrainConfig()
    parser.add_argument("--epochs", type=positive_int, help=f"total number of epochs (default: {defaults.epochs})")
    parser.add_argument("--batch-size", type=positive_int,
                       help=f"digits per step; the last batch of an epoch holds the rest "
                            f"(default: {defaults.batch_size})")
    parser.add_argument("--latent-dim", type=positive_int,
                       help=f"dimensions of z; 2 also draws manifold.png (default: {defaults.latent_dim})")
    parser.add_argument("--hidden", type=positive_int, nargs="+", metavar="WIDTH",
                       help=f"hidden layer widths of the encoder, mirrored in the decoder "
                            f"(default: {' '.join(map(str, defaults.hidden))})")
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS),
                        help=f"nonlinearity after every hidden layer; the IWAE paper's one-stochastic-layer model is "
                             f"--hidden 200 200 --latent-dim 50 --activation tanh (default: {defaults.activation})")
    parser.add_argument("--lr", type=positive_float, help=f"Adam's learning rate (default: {defaults.lr})")
    parser.add_argument("--samples", type=positive_int, metavar="K",
                       help=f"samples of z per digit in the ELBO estimate; with importance-weighted, the k of the "
                            f"bound L_k (default: {defaults.samples})")
    parser.add_argument("--estimator", choices=ESTIMATORS,
                       help=f"the objective: SGVB with the closed-form KL (eq. 7) or Monte Carlo (eq. 6), or the "
                            f"importance-weighted bound L_k = E[log (1/k) sum_i p(x,z_i)/q(z_i|x)] of Burda et al. "
                            f"2015, k = --samples (IWAE; k = 1 is monte-carlo) (default: {defaults.estimator})")
    parser.add_argument("--kl-warmup", type=non_negative_int, metavar="EPOCHS",
                        help="KL warm-up: multiply the KL term by a weight rising linearly from 0 at the first step "
                             "to 1 after EPOCHS epochs (Bowman et al. 2016; Sonderby et al. 2016); metrics.jsonl "
                             "records the weight; the held-out loss always has weight 1 (the true bound) "
                             f"(default: {defaults.kl_warmup}, no warm-up)")
    parser.add_argument("--binarize", action="store_const", const=True,
                       help="train on binary digits, x ~ Bernoulli(intensity) drawn afresh each epoch "
                            "(default: raw intensities)")
    parser.add_argument("--seed", type=non_negative_int,
                       help=f"seed of every random draw of the run (default: {defaults.seed})")
    parser.add_argument("--data-dir", type=path, metavar="DIR",
                       help="directory of MNIST IDX files (train and t10k for the standard split, or "
                            "t10k only); default: the embedded 10,000 test digits")
    parser.add_argument("--out", type=path, metavar="DIR",
                       help="output directory, held by one run at a time (default: a new runs/<date-time>)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    parser.add_argument("--eager", action="store_true",
                        help="walk the engine's graph at every step instead of replaying the captured step "
                             "(the same numbers, slower; see docs/capture.md)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}
    if args.resume:
        if args.out is None:
            raise UsageError("minivae train: error: --resume needs --out, the directory of the run to continue")
        config = TrainConfig(**{**read_checkpoint_config(Path(args.out) / CHECKPOINT).to_json(), **given})
    else:
        config = TrainConfig(**given)
    require_memory("train", training_memory(config), f"--hidden {' '.join(map(str, config.hidden))} --latent-dim "
                   f"{config.latent_dim} --batch-size {config.batch_size} --samples {config.samples}")
    out = Path(args.out) if args.out is not None else new_run_folder("runs", time.strftime("%Y%m%d-%H%M%S"))
    try:
        result = train(config, out, resume=args.resume, eager=args.eager)
    except DiskFullError as err:
        if not (out / CHECKPOINT).is_file():
            raise
        raise DiskFullError(err.errno, err.path, f"continue the run with: minivae train --out {out} --resume") from None
    if result.status == "interrupted":
        by = "terminated (SIGTERM)" if result.signal == "SIGTERM" else "interrupted"
        print(f"minivae: {by} after step {result.step} (epoch {result.epoch + 1} of {config.epochs}); "
              f"checkpoint saved; continue with: minivae train --out {out} --resume", file=sys.stderr)
        return EXIT_SIGNAL_BASE + signal.SIGTERM if result.signal == "SIGTERM" else EXIT_INTERRUPTED
    print(f"done: epoch {result.epoch} of {config.epochs}, step {result.step}; metrics, checkpoint and figures "
          f"in {out}")
    return 0


def training_memory(config: TrainConfig) -> int:
    """A lower bound of the bytes a run of ``config`` holds at once: four float32 arrays per
    parameter (its value, gradient and Adam's two moments) and the activations of a step's forward
    and backward pass, or of an evaluation batch, whichever is larger."""
    step = 2 * vae_activations(PIXELS, config.hidden, config.latent_dim,
                               min(config.batch_size, MOST_DIGITS) * config.samples)
    evaluation = vae_activations(PIXELS, config.hidden, config.latent_dim, EVALUATION_BATCH * config.samples)
    return 4 * (4 * vae_parameters(PIXELS, config.hidden, config.latent_dim) + max(step, evaluation))
