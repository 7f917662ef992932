"""Export a trained model to PyTorch: its parameters as a ``state_dict`` for the equivalent module.

minivae names and shapes parameters as PyTorch does (``encoder.0.weight`` of shape
(out_features, in_features), ...), so the exported dict loads with ``strict=True`` into a
``torch.nn.Module`` built of the same ``Linear`` layers and activations (``nn.ReLU``, ``nn.Tanh``,
...) in ``Sequential`` containers: ``torch_module(model.config)`` builds it. PyTorch is imported
only here, only when exporting; minivae does not depend on it.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..files import atomic_write, refuse_overwriting_input
from .checkpoint import load_checkpoint


TORCH_ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "softplus": "Softplus"}
"""Each activation of ``minivae.nn.ACTIVATIONS`` by the name of its ``torch.nn`` module."""


def _import_torch():
    try:
        import torch
    except ImportError:
        raise ModuleNotFoundError("export: --torch needs PyTorch, which minivae does not install: "
                                  "python -m pip install torch") from None
    return torch


def torch_module(config: dict):
    """The ``torch.nn.Module`` equivalent to ``VAE(**config)`` (``VAE.config``, as a checkpoint stores it).

    Its parameters have the VAE's names and shapes, so an exported ``state_dict`` loads into it with
    ``strict=True``; the activation is the config's (``torch.nn.Tanh`` for "tanh"). Methods:
    ``encode(x) -> (mu, logvar)`` and ``decode(z) -> logits``. Raises ``ModuleNotFoundError`` without PyTorch.
    """
    torch = _import_torch()
    activation = getattr(torch.nn, TORCH_ACTIVATIONS[config.get("activation", "relu")])
    dtype = getattr(torch, config.get("dtype", "float32"))

    def layers(widths, last_activation: bool):
        modules = []
        for i, (a, b) in enumerate(zip(widths, widths[1:])):
            modules.append(torch.nn.Linear(a, b, dtype=dtype))
            if last_activation or i < len(widths) - 2:
                modules.append(activation())
        return torch.nn.Sequential(*modules)

    class VAE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            encoder = [config["input_dim"], *config["hidden"]]
            self.encoder = layers(encoder, last_activation=True)
            self.encoder_mu = torch.nn.Linear(encoder[-1], config["latent_dim"], dtype=dtype)
            self.encoder_logvar = torch.nn.Linear(encoder[-1], config["latent_dim"], dtype=dtype)
            self.decoder = layers([config["latent_dim"], *reversed(encoder)], last_activation=False)

        def encode(self, x):
            h = self.encoder(x)
            return self.encoder_mu(h), self.encoder_logvar(h)

        def decode(self, z):
            return self.decoder(z)

    return VAE()


def export_torch(checkpoint, out) -> Path:
    """Write the model of ``checkpoint`` to ``out`` with ``torch.save``: an ordered dict of
    ``torch.Tensor`` (float32, as trained) per parameter name; return ``out``.

    Raises ``ModuleNotFoundError`` without PyTorch, ``ValueError`` if ``out`` is the checkpoint,
    ``CheckpointError`` for an unreadable checkpoint. The file is written atomically.
    """
    torch = _import_torch()
    out = Path(out)
    refuse_overwriting_input(out, [checkpoint], "export")
    model = load_checkpoint(checkpoint).model
    state = OrderedDict((name, torch.from_numpy(np.array(array, copy=True)))
                        for name, array in model.state_dict().items())
    with atomic_write(out) as file:
        torch.save(state, file)
    return out
