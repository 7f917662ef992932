"""The ``minivae`` command: train, evaluate, sample, export, download, estimators.

This module and ``estimators_cli`` add their subcommands with ``register(subparsers)``: each
calls ``subparsers.add_parser(name, help=..., description=...)`` and sets the handler with
``set_defaults(handler=function)``; the handler takes the parsed arguments and returns the exit
status. A handler raises ``UsageError`` for a misuse of the command (exit status 2); any other
error ends the command with one line on stderr and exit status 1, Ctrl-C with status 130 and
SIGTERM with 143 (a training run saves its checkpoint first).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

from . import __version__, estimators_cli
from .arguments import UsageError, non_negative_int, positive_float, positive_int
from .data import DOWNLOAD_TIMEOUT, download_mnist
from .files import DiskFullError
from .progress import Progress
from .runlock import new_run_folder
from .train import CHECKPOINT, TrainConfig, evaluate_checkpoint, read_checkpoint_config, sample_checkpoint, train
from .vae import ESTIMATORS

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
EXIT_SIGNAL_BASE = 128   # a command stopped by signal N exits with 128 + N: 130 for SIGINT, 143 for SIGTERM


class Terminated(Exception):
    """SIGTERM arrived outside a training loop (which saves a checkpoint instead)."""


def _terminate(signum, frame):
    raise Terminated


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors raised as ``UsageError`` to be reported on one line."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


class CommandParser(ArgumentParser):
    """The parser of one subcommand: arguments it does not know are its error, named after it."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, unknown = super().parse_known_args(args, namespace)
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}")
        return namespace, unknown


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="minivae", description="Train and use a variational auto-encoder on MNIST, "
                                                        "and measure the variance of its gradient estimators.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version and exit")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True,
                                       parser_class=CommandParser)
    register(subparsers)
    estimators_cli.register(subparsers)
    return parser


def main(argv=None) -> int:
    """Run the command given by ``argv`` (default: ``sys.argv[1:]``) and return its exit status.

    SIGTERM ends a command like Ctrl-C (a training run saves its checkpoint), with status 143.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except Terminated:
        print("minivae: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_SIGNAL_BASE + signal.SIGTERM
    except SystemExit as exit:  # --help and --version
        return int(exit.code or 0)
    except UsageError as err:
        print(err, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("minivae: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # one line instead of a traceback; the type too where the message may not say
        expected = isinstance(err, (OSError, ValueError, ArithmeticError, ImportError))
        print(f"minivae: error: {err if expected else f'{type(err).__name__}: {err}'}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------------------- the commands
def register(subparsers) -> None:
    """Add the built-in commands: train, evaluate, sample, export, download."""
    train = subparsers.add_parser(
        "train", help="train a VAE (with no flags: the default model on the embedded digits, offline)",
        description="Train a VAE on MNIST and write metrics.jsonl, checkpoint.npz and figures into --out. "
                    "Ctrl-C and SIGTERM save a checkpoint (exit 130 and 143); --resume continues it exactly. With "
                    "--resume, the other settings come from the checkpoint; --epochs may raise the total, and "
                    "--data-dir may name the run's data in a new place (checked by checksum).")
    defaults = TrainConfig()
    train.add_argument("--epochs", type=positive_int, help=f"total number of epochs (default: {defaults.epochs})")
    train.add_argument("--batch-size", type=positive_int,
                       help=f"digits per step; the last batch of an epoch holds the rest (default: {defaults.batch_size})")
    train.add_argument("--latent-dim", type=positive_int,
                       help=f"dimensions of z; 2 also draws manifold.png (default: {defaults.latent_dim})")
    train.add_argument("--hidden", type=positive_int, nargs="+", metavar="WIDTH",
                       help=f"hidden layer widths of the encoder, mirrored in the decoder "
                            f"(default: {' '.join(map(str, defaults.hidden))})")
    train.add_argument("--lr", type=positive_float, help=f"Adam's learning rate (default: {defaults.lr})")
    train.add_argument("--samples", type=positive_int,
                       help=f"samples of z per digit in the ELBO estimate (default: {defaults.samples})")
    train.add_argument("--estimator", choices=ESTIMATORS,
                       help=f"SGVB estimator: closed-form KL (eq. 7) or Monte Carlo (eq. 6) (default: {defaults.estimator})")
    train.add_argument("--binarize", action="store_const", const=True,
                       help="train on binary digits, x ~ Bernoulli(intensity) drawn afresh each epoch "
                            "(default: raw intensities)")
    train.add_argument("--seed", type=non_negative_int,
                       help=f"seed of every random draw of the run (default: {defaults.seed})")
    train.add_argument("--data-dir", metavar="DIR",
                       help="directory of MNIST IDX files (train and t10k for the standard split, or "
                            "t10k only); default: the embedded 10,000 test digits")
    train.add_argument("--out", metavar="DIR",
                       help="output directory, held by one run at a time (default: a new runs/<date-time>)")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    train.set_defaults(handler=_train)

    evaluate = subparsers.add_parser(
        "evaluate", help="held-out negative ELBO and importance-weighted -log p(x) of a checkpoint",
        description="Estimate, on the run's held-out digits, the negative ELBO and -log p(x) by importance "
                    "sampling, and print both with their gap, in nats per digit.")
    evaluate.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint.npz written by train")
    evaluate.add_argument("--iw-samples", type=positive_int, default=5000,
                          help="importance samples per digit (default: 5000)")
    evaluate.add_argument("--data-dir", metavar="DIR", help="MNIST directory (default: the run's own data)")
    evaluate.add_argument("--seed", type=non_negative_int, default=0,
                          help="seed of the importance samples (default: 0)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    evaluate.set_defaults(handler=_evaluate)

    sample = subparsers.add_parser("sample", help="decode digits drawn from the prior into a PNG grid",
                                   description="Decode n draws z ~ N(0, I) of a checkpoint's model into a PNG.")
    sample.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint.npz written by train")
    sample.add_argument("--n", type=positive_int, default=64, help="number of digits (default: 64)")
    sample.add_argument("--out", default="samples.png", metavar="PNG", help="output file (default: samples.png)")
    sample.add_argument("--seed", type=non_negative_int, default=0, help="seed of the draws (default: 0)")
    sample.set_defaults(handler=_sample)

    export = subparsers.add_parser(
        "export", help="write a checkpoint's model for PyTorch (torch.save of a state_dict)",
        description="Write the model of a checkpoint as a PyTorch state_dict (torch.save), which loads with "
                    "strict=True into the equivalent torch.nn.Module (see the README). Needs PyTorch installed.")
    export.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint.npz written by train")
    export.add_argument("--torch", required=True, metavar="PT", help="output file, e.g. model.pt")
    export.set_defaults(handler=_export)

    download = subparsers.add_parser("download", help="download a data set and verify its checksums",
                                     description="Download the four MNIST files and verify their sizes and MD5 sums, and their "
                                                 "SHA-256 sums where published.")
    download.add_argument("dataset", choices=("mnist",), help="the data set to download")
    download.add_argument("--dir", default="data/mnist", metavar="DIR",
                          help="destination directory (default: data/mnist)")
    download.add_argument("--url", metavar="URL",
                          help="base URL of a mirror (http, https or file); default: $MINIVAE_MNIST_URL "
                               "or the canonical mirror")
    download.add_argument("--timeout", type=positive_float, default=DOWNLOAD_TIMEOUT, metavar="SECONDS",
                          help=f"give up on a server that does not connect or answer within SECONDS, or whose "
                               f"transfer brings under 16 KiB in SECONDS (default: {DOWNLOAD_TIMEOUT:g})")
    download.set_defaults(handler=_download)


def _train(args) -> int:
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}
    if args.resume:
        if args.out is None:
            raise UsageError("minivae train: error: --resume needs --out, the directory of the run to continue")
        config = TrainConfig(**{**read_checkpoint_config(Path(args.out) / CHECKPOINT).to_json(), **given})
    else:
        config = TrainConfig(**given)
    out = Path(args.out) if args.out is not None else new_run_folder("runs", time.strftime("%Y%m%d-%H%M%S"))
    try:
        result = train(config, out, resume=args.resume)
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


def _evaluate(args) -> int:
    results = evaluate_checkpoint(args.checkpoint, args.iw_samples, args.data_dir, args.seed, stream=sys.stderr)
    if args.json:
        print(json.dumps(results))
        return 0
    rows = [("checkpoint", f"{results['checkpoint']} (epoch {results['epoch']}, step {results['step']})"),
            ("held-out digits", f"{results['held_out_digits']}"),
            ("negative ELBO", f"{results['negative_elbo']:.3f} nats"),
            (f"-log p(x), IW k={results['iw_samples']}", f"{results['iw_negative_log_likelihood']:.3f} nats"),
            ("gap (ELBO to IW)", f"{results['gap']:.3f} nats")]
    width = max(len(label) for label, _ in rows)
    print("\n".join(f"{label:<{width}}  {value}" for label, value in rows))
    return 0


def _sample(args) -> int:
    print(f"wrote {sample_checkpoint(args.checkpoint, args.n, args.out, args.seed)}")
    return 0


def _export(args) -> int:
    from .export import export_torch  # imports torch: only for this command
    print(f"wrote {export_torch(args.checkpoint, args.torch)}")
    return 0


def _download(args) -> int:
    progress = Progress(sys.stdout)
    download_mnist(args.dir, base_url=args.url, timeout=args.timeout, report=progress.line, progress=progress.update)
    print(f"MNIST is in {args.dir}; train on it with: minivae train --data-dir {args.dir}")
    return 0
