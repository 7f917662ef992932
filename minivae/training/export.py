"""Export a trained model to PyTorch: its parameters as a ``state_dict`` for the equivalent module.

minivae names and shapes parameters as PyTorch does (``encoder.0.weight`` of shape
(out_features, in_features), ...), so the exported dict loads with ``strict=True`` into a
``torch.nn.Module`` built of the same ``Linear`` layers in ``Sequential`` containers (the README
shows it). PyTorch is imported only here, only when exporting; minivae does not depend on it.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..files import atomic_write, refuse_overwriting_input
from .checkpoint import load_checkpoint


def export_torch(checkpoint, out) -> Path:
    """Write the model of ``checkpoint`` to ``out`` with ``torch.save``: an ordered dict of
    ``torch.Tensor`` (float32, as trained) per parameter name; return ``out``.

    Raises ``ModuleNotFoundError`` without PyTorch, ``ValueError`` if ``out`` is the checkpoint,
    ``CheckpointError`` for an unreadable checkpoint. The file is written atomically.
    """
    try:
        import torch
    except ImportError:
        raise ModuleNotFoundError("export: --torch needs PyTorch, which minivae does not install: "
                                  "python -m pip install torch") from None
    out = Path(out)
    refuse_overwriting_input(out, [checkpoint], "export")
    model = load_checkpoint(checkpoint).model
    state = OrderedDict((name, torch.from_numpy(np.array(array, copy=True)))
                        for name, array in model.state_dict().items())
    with atomic_write(out) as file:
        torch.save(state, file)
    return out
