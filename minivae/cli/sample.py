"""``minivae sample``: digits decoded from the prior by a checkpoint's model, as a PNG grid."""
from __future__ import annotations

from ..training import sample_checkpoint
from .arguments import non_negative_int, positive_int


def register(subparsers) -> None:
    """Add the ``sample`` command."""
    parser = subparsers.add_parser("sample", help="decode digits drawn from the prior into a PNG grid",
                                   description="Decode n draws z ~ N(0, I) of a checkpoint's model into a PNG.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint.npz written by train")
    parser.add_argument("--n", type=positive_int, default=64, help="number of digits (default: 64)")
    parser.add_argument("--out", default="samples.png", metavar="PNG", help="output file (default: samples.png)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the draws (default: 0)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    print(f"wrote {sample_checkpoint(args.checkpoint, args.n, args.out, args.seed)}")
    return 0
