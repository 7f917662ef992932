"""Compiled kernels for the training step's hot paths, and the fused ops built on them.

The model's functions (``minivae.functions``) are defined as compositions of engine primitives;
``fused.py`` registers, beneath some of them, an op whose forward and backward run the kernels of
``activations``, ``losses`` and ``gaussian``. Which runs is the backend's choice: "numba" (the
default) or "reference" (the compositions), from ``MINIVAE_KERNELS`` at import or ``use`` at run
time, per thread, as a plain call or for a block::

    minivae.kernels.use("reference")        # from here on, in this thread
    with minivae.kernels.use("numba"):
        ...                                 # the fused kernels inside the block only

Kernels take their outputs as arguments and keep the dtype (float32 or float64) of their inputs.
Matrix products are not kernels: they stay in NumPy's BLAS.
"""
from .backend import BACKENDS, ENV_VAR, active, use
from .activations import bias_add, bias_relu, column_sum, relu_backward
from .losses import bce_with_logits_rows
from .gaussian import gaussian_kl_backward, gaussian_kl_rows, reparameterize, reparameterize_backward
from .adam import adam_step
from . import activations as _activations, gaussian as _gaussian, losses as _losses, adam as _adam, checks as _checks

COMPILED = (_activations.bias_add, _activations.bias_relu, _activations.relu_backward, _activations.column_sum,
            _losses._bce_rows, _losses.scale_rows, _gaussian._reparameterize_combine, _gaussian.reparameterize_backward,
            _gaussian._gaussian_kl_combine, _gaussian.gaussian_kl_backward, _adam.adam_step, _checks._zero_sum)
"""Every Numba-compiled function (dispatchers; plain functions where Numba is absent)."""
