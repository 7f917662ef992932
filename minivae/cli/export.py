"""``minivae export``: a checkpoint's model as a PyTorch ``state_dict`` (needs PyTorch)."""
from __future__ import annotations

from .arguments import path


def register(subparsers) -> None:
    """Add the ``export`` command."""
    parser = subparsers.add_parser(
        "export", help="write a checkpoint's model for PyTorch (torch.save of a state_dict)",
        description="Write the model of a checkpoint as a PyTorch state_dict (torch.save), which loads with "
                    "strict=True into the equivalent torch.nn.Module (see the README). Needs PyTorch installed.")
    parser.add_argument("checkpoint", type=path, metavar="CHECKPOINT", help="a checkpoint.npz written by train")
    parser.add_argument("--torch", type=path, required=True, metavar="PT", help="output file, e.g. model.pt")
    parser.set_defaults(handler=run)


def run(args) -> int:
    from ..training.checkpoint import load_checkpoint
    from ..training.export import TORCH_ACTIVATIONS, export_torch  # imports torch: only for this command
    print(f"wrote {export_torch(args.checkpoint, args.torch)}")
    config = load_checkpoint(args.checkpoint).model.config
    print(f"it loads into minivae.training.export.torch_module({config}): Linear layers with "
          f"torch.nn.{TORCH_ACTIVATIONS[config['activation']]}")
    return 0
