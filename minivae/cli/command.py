"""The ``minivae`` command: train, evaluate, sample, export, download, estimators.

Each command is a module of this package with ``register(subparsers)`` and a handler ``run``:
``register`` calls ``subparsers.add_parser(name, help=..., description=...)`` and sets the handler
with ``set_defaults(handler=run)``; the handler takes the parsed arguments and returns the exit
status. A handler raises ``UsageError`` for a misuse of the command (exit status 2); any other
error ends the command with one line on stderr and exit status 1, Ctrl-C with status 130 and
SIGTERM with 143 (a training run saves its checkpoint first).
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from .. import __version__, kernels
from . import download, estimators, evaluate, export, sample, train
from .arguments import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_SIGNAL_BASE, EXIT_USAGE, UsageError

COMMANDS = (train, evaluate, sample, export, download, estimators)  # in the order --help lists them


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
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv=None) -> int:
    """Run the command given by ``argv`` (default: ``sys.argv[1:]``) and return its exit status.

    SIGTERM ends a command like Ctrl-C (a training run saves its checkpoint), with status 143.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        kernels.active()  # an unknown MINIVAE_KERNELS is one line for every command
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
