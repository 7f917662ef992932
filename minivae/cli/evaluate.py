"""``minivae evaluate``: a checkpoint's held-out negative ELBO and importance-weighted −log p(x)."""
from __future__ import annotations

import json
import sys

from ..training import evaluate_checkpoint
from .arguments import non_negative_int, path, positive_int


def register(subparsers) -> None:
    """Add the ``evaluate`` command."""
    parser = subparsers.add_parser(
        "evaluate", help="held-out negative ELBO and importance-weighted -log p(x) of a checkpoint",
        description="Estimate, on the run's held-out digits, the negative ELBO and -log p(x) by importance "
                    "sampling, and print both with their gap, in nats per digit.")
    parser.add_argument("checkpoint", type=path, metavar="CHECKPOINT", help="a checkpoint.npz written by train")
    parser.add_argument("--iw-samples", type=positive_int, default=5000,
                          help="importance samples per digit (default: 5000)")
    parser.add_argument("--data-dir", type=path, metavar="DIR", help="MNIST directory (default: the run's own data)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                          help="seed of the importance samples (default: 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(handler=run)


def run(args) -> int:
    results = evaluate_checkpoint(args.checkpoint, args.iw_samples, args.data_dir, args.seed, stream=sys.stderr)
    if args.json:
        print(json.dumps(results))
        return 0
    rows = [("checkpoint", f"{results['checkpoint']} (epoch {results['epoch']}, step {results['step']})"),
            ("data", results["data"]),
            ("likelihood", results["likelihood"]),
            ("held-out digits", f"{results['held_out_digits']}"),
            ("negative ELBO", f"{results['negative_elbo']:.3f} nats"),
            (f"-log p(x), IW k={results['iw_samples']}", f"{results['iw_negative_log_likelihood']:.3f} nats"),
            ("gap (ELBO to IW)", f"{results['gap']:.3f} nats")]
    width = max(len(label) for label, _ in rows)
    print("\n".join(f"{label:<{width}}  {value}" for label, value in rows))
    return 0
