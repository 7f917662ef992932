"""Each fused function against its composition, on the arrays of the default model's step (float32).

A case is one call of a function of ``minivae.functions`` and the backward pass of its result,
seeded with a fixed gradient: with ``kernels.use("numba")`` the fused implementation registered
beneath it runs (one op, its kernels), with ``kernels.use("reference")`` the function's composition
of engine primitives (several ops, each recorded and walked). The arrays have the shapes of the
default step (784-400-20, batch 128); the tensors that want a gradient are those that want one in
the step (the images and ε do not). Adam's update has no composition: ``minivae.optim.adam_update``
(its kernel beneath, with the "numba" backend) is timed against its textbook NumPy form (the
"reference" backend) over all 652,824 parameters.
"""
from __future__ import annotations

import time

import numpy as np

import minivae as mv
from minivae import functions, kernels, optim


def function_cases(batch: int = 128, hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0):
    """(label, function, tensors, seed gradient) for every fused function, with the shapes of one step."""
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=1.0, grad=True):
        return mv.Tensor((scale * rng.standard_normal(shape)).astype(np.float32), requires_grad=grad)

    images = mv.Tensor((rng.random((batch, input_dim)) < 0.13).astype(np.float32))
    bound = 1 / np.sqrt(input_dim)
    weight = mv.Tensor(rng.uniform(-bound, bound, (hidden, input_dim)).astype(np.float32), requires_grad=True)
    bias = mv.Tensor(rng.uniform(-bound, bound, hidden).astype(np.float32), requires_grad=True)
    return [
        (f"linear ({batch}×{input_dim} → {hidden})", functions.linear, (images, weight, bias),
         normal(batch, hidden, grad=False).data),
        (f"linear_relu ({batch}×{input_dim} → {hidden})", functions.linear_relu, (images, weight, bias),
         normal(batch, hidden, grad=False).data),
        (f"bernoulli_log_prob ({batch}×{input_dim})", functions.bernoulli_log_prob,
         (normal(batch, input_dim, scale=3.0), images), normal(batch, grad=False).data),
        (f"gaussian_rsample ({batch}×{latent})", functions.gaussian_rsample,
         (normal(batch, latent), normal(batch, latent), normal(batch, latent, grad=False)),
         normal(batch, latent, grad=False).data),
        (f"kl_to_standard_normal ({batch}×{latent})", functions.kl_to_standard_normal,
         (normal(batch, latent), normal(batch, latent)), normal(batch, grad=False).data),
    ]


def forward_backward(function, tensors, seed):
    """One call: the function, then the backward pass from its result; the leaves' gradients cleared first."""
    for t in tensors:
        t.grad = None
    function(*tensors).backward(seed)


def adam_case(hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0):
    """(label, {backend: the update of every parameter}) for ``optim.adam_update``."""
    rng = np.random.default_rng(seed)
    parameters = hidden * input_dim * 2 + hidden * latent * 3 + 2 * hidden + 2 * latent + input_dim
    arrays = [rng.standard_normal(parameters).astype(np.float32) for _ in range(2)] \
        + [np.zeros(parameters, np.float32) for _ in range(2)]
    def update(backend):
        with kernels.use(backend):
            optim.adam_update(*arrays, 10, 1e-3, 0.9, 0.999, 1e-8)
    return (f"adam_update ({parameters:,} parameters)",
            {"numba": lambda: update("numba"), "reference": lambda: update("reference")})


def cases(**shapes):
    """(label, {"numba": call, "reference": call}) for every case; each call runs on its backend.
    ``shapes``: batch, hidden, latent, input_dim (the default step's unless given)."""
    out = []
    for label, function, tensors, seed in function_cases(**shapes):
        calls = {}
        for backend in ("numba", "reference"):
            def call(backend=backend, function=function, tensors=tensors, seed=seed):
                with kernels.use(backend):
                    forward_backward(function, tensors, seed)
            calls[backend] = call
        out.append((label + ", forward + backward", calls))
    out.append(adam_case(**{k: v for k, v in shapes.items() if k != "batch"}))
    return out


def time_kernels(calls: int, block: int = 10, **shapes) -> list[dict]:
    """``{"case": label, "numba": seconds per call, "reference": seconds per call}`` of each case, the two
    backends alternating in blocks of ``block`` calls (``calls`` per backend in all, at least one block)."""
    results = []
    for label, implementations in cases(**shapes):
        for function in implementations.values():
            function()  # compile or load from the cache, and warm up
        times = {name: [] for name in implementations}
        for _ in range(max(1, calls // block)):
            for name, function in implementations.items():
                for _ in range(block):
                    start = time.perf_counter()
                    function()
                    times[name].append(time.perf_counter() - start)
        results.append({"case": label, **times})
    return results
