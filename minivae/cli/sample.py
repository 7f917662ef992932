"""``minivae sample``: digits decoded from the prior by a checkpoint's model, as a PNG grid."""
from __future__ import annotations

from ..figures import DIGIT_SCALE
from ..files import refuse_overwriting_input
from ..training import read_checkpoint_config, sample_checkpoint
from .arguments import non_negative_int, path, positive_int, require_memory

CELL = 28 + 2   # a digit and its padding in the grid, in digit pixels


def register(subparsers) -> None:
    """Add the ``sample`` command."""
    parser = subparsers.add_parser("sample", help="decode digits drawn from the prior into a PNG grid",
                                   description="Decode n draws z ~ N(0, I) of a checkpoint's model into a PNG.")
    parser.add_argument("checkpoint", type=path, metavar="CHECKPOINT", help="a checkpoint.npz written by train")
    parser.add_argument("--n", type=positive_int, default=64,
                        help="number of digits (default: 64); as many as the memory holds, about 25 KB each")
    parser.add_argument("--out", type=path, default="samples.png", metavar="PNG",
                        help="output file (default: samples.png)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the draws (default: 0)")
    parser.set_defaults(handler=run)


def run(args) -> int:
    refuse_overwriting_input(args.out, [args.checkpoint], "sample")  # before reading the checkpoint
    config = read_checkpoint_config(args.checkpoint)
    pixels = 28 * 28
    decoder = sum(config.hidden) + config.latent_dim + 2 * pixels   # float32 values per digit
    grid = (CELL * DIGIT_SCALE) ** 2 + CELL ** 2 * DIGIT_SCALE        # the upscaled grid, uint8, and its first half
    require_memory("sample", args.n * (4 * decoder + 8 * pixels + grid), f"--n {args.n}")
    print(f"wrote {sample_checkpoint(args.checkpoint, args.n, args.out, args.seed)}")
    return 0
