"""Compiled kernels for the training step's hot paths, each beside its plain NumPy reference.

Every kernel is one function that runs either its Numba-compiled implementation or its NumPy
reference, whichever backend is active: ``MINIVAE_KERNELS`` ("numba", the default, or "numpy") at
import, or ``use`` at run time::

    with minivae.kernels.use("numpy"):
        ...   # every kernel in here runs its NumPy reference

Kernels take their outputs as arguments and keep the dtype (float32 or float64) of their inputs.
Matrix products are not kernels: they stay in NumPy's BLAS.
"""
from .backend import BACKENDS, ENV_VAR, active, use
from .activations import bias_relu, column_sum, relu_backward
from .losses import bce_with_logits_rows
from .gaussian import gaussian_kl_backward, gaussian_kl_rows, reparameterize, reparameterize_backward
from .adam import adam_step, adam_update

KERNELS = (bias_relu, relu_backward, column_sum, bce_with_logits_rows, reparameterize, reparameterize_backward,
           gaussian_kl_rows, gaussian_kl_backward, adam_step)
"""Every kernel, each with ``.numba`` and ``.numpy`` implementations."""
