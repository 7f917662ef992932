"""``minivae download``: fetch a data set and verify its checksums."""
from __future__ import annotations

import sys

from ..data import DOWNLOAD_TIMEOUT, download_mnist
from ..files import make_directory
from ..training.progress import Progress
from .arguments import path, seconds


def register(subparsers) -> None:
    """Add the ``download`` command."""
    parser = subparsers.add_parser("download", help="download a data set and verify its checksums",
                                     description="Download the four MNIST files and verify their sizes and MD5 "
                                                 "sums, and their SHA-256 sums where published.")
    parser.add_argument("dataset", choices=("mnist",), help="the data set to download")
    parser.add_argument("--dir", type=path, default="data/mnist", metavar="DIR",
                          help="destination directory (default: data/mnist)")
    parser.add_argument("--url", metavar="URL",
                          help="base URL of a mirror (http, https or file); default: $MINIVAE_MNIST_URL "
                               "or the canonical mirror")
    parser.add_argument("--timeout", type=seconds, default=DOWNLOAD_TIMEOUT, metavar="SECONDS",
                          help=f"give up on a server that does not connect or answer within SECONDS, or whose "
                               f"transfer brings under 16 KiB in SECONDS (default: {DOWNLOAD_TIMEOUT:g})")
    parser.set_defaults(handler=run)


def run(args) -> int:
    make_directory(args.dir, "the data folder")
    progress = Progress(sys.stdout)
    download_mnist(args.dir, base_url=args.url, timeout=args.timeout, report=progress.line, progress=progress.update)
    print(f"MNIST is in {args.dir}; train on it with: minivae train --data-dir {args.dir}")
    return 0
