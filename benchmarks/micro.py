"""Each kernel against its NumPy reference, on the arrays of the default model's step (float32)."""
from __future__ import annotations

import time

import numpy as np

from minivae import kernels


def kernel_cases(batch: int = 128, hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0):
    """(label, kernel, arguments) for every kernel, with the shapes one training step gives it."""
    rng = np.random.default_rng(seed)

    def normal(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    def empty(*shape):
        return np.empty(shape, np.float32)

    targets = (rng.random((batch, input_dim)) < 0.13).astype(np.float32)
    parameters = hidden * input_dim * 2 + hidden * latent * 3 + 2 * hidden + 2 * latent + input_dim
    adam_arrays = [normal(parameters) for _ in range(2)] + [np.zeros(parameters, np.float32) for _ in range(2)]
    adam_scalars = [np.float32(s) for s in (0.9, 0.999, 1e-3, 1e-8, 0.0)]
    return [
        (f"bias_relu ({batch}×{hidden})", kernels.bias_relu, (normal(batch, hidden), normal(hidden), empty(batch, hidden))),
        (f"relu_backward ({batch}×{hidden})", kernels.relu_backward,
         (normal(batch, hidden), normal(batch, hidden), empty(batch, hidden), empty(hidden))),
        (f"column_sum ({batch}×{input_dim})", kernels.column_sum, (normal(batch, input_dim), empty(input_dim))),
        (f"bce_with_logits_rows ({batch}×{input_dim})", kernels.bce_with_logits_rows,
         (3 * normal(batch, input_dim), targets, empty(batch), empty(batch, input_dim))),
        (f"reparameterize ({batch}×{latent})", kernels.reparameterize,
         (normal(batch, latent), normal(batch, latent), normal(1, batch, latent), empty(1, batch, latent),
          empty(batch, latent))),
        (f"reparameterize_backward ({batch}×{latent})", kernels.reparameterize_backward,
         (normal(1, batch, latent), normal(batch, latent), normal(1, batch, latent), empty(batch, latent))),
        (f"gaussian_kl_rows ({batch}×{latent})", kernels.gaussian_kl_rows,
         (normal(batch, latent), normal(batch, latent), empty(batch), empty(batch, latent))),
        (f"gaussian_kl_backward ({batch}×{latent})", kernels.gaussian_kl_backward,
         (normal(batch), normal(batch, latent), normal(batch, latent), empty(batch, latent), empty(batch, latent))),
        (f"adam_step ({parameters:,} parameters)", kernels.adam_step, (*adam_arrays, *adam_scalars)),
    ]


def time_kernels(calls: int, block: int = 10) -> list[dict]:
    """Median seconds per call of each kernel's Numba and NumPy implementations, alternating in blocks."""
    results = []
    for label, kernel, args in kernel_cases():
        implementations = {"numba": kernel.numba, "numpy": kernel.numpy}
        for function in implementations.values():
            function(*args)  # compile or load from the cache, and warm up
        times = {name: [] for name in implementations}
        for _ in range(max(1, calls // block)):
            for name, function in implementations.items():
                for _ in range(block):
                    start = time.perf_counter()
                    function(*args)
                    times[name].append(time.perf_counter() - start)
        medians = {name: float(np.median(t)) for name, t in times.items()}
        results.append({"kernel": label, "numba_s": medians["numba"], "numpy_s": medians["numpy"],
                        "speedup": medians["numpy"] / medians["numba"]})
    return results
