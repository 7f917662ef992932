"""Checking an engine gradient against central differences.

For inputs x₁…xₙ and a function f with output y, gradcheck compares, for every input xᵢ that
requires grad, the engine's vector-Jacobian product vᵀ ∂y/∂xᵢ with the central difference

    ∂(v·y)/∂xᵢ[j] ≈ (v·f(…, xᵢ + ε eⱼ, …) − v·f(…, xᵢ − ε eⱼ, …)) / 2ε

where v is 1 for a one-element output and otherwise a fixed pseudo-random cotangent, so that every
output element contributes. Everything runs in float64.
"""
from __future__ import annotations

import numpy as np

from .engine import Tensor, no_grad


class GradcheckError(AssertionError):
    """An engine gradient disagrees with its central-difference estimate."""


def gradcheck(fn, *inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3, seed: int = 0) -> bool:
    """Check ``fn``'s engine gradients with respect to ``inputs`` against central differences.

    Floating Tensors are copied to float64 and keep their ``requires_grad`` and ``name``; floating
    ndarrays become float64 Tensors that require grad; anything else (integer indices, boolean
    masks, numbers) reaches ``fn`` unchanged. An element passes when
    ``|analytic − numeric| ≤ atol + rtol·|numeric|``. ``seed`` fixes the cotangent.

    Returns True, or raises ``GradcheckError`` naming the input and its worst element.
    """
    args = [_float64_copy(x) for x in inputs]
    checked = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad; pass Tensors with requires_grad=True "
                         "or floating ndarrays")

    out = fn(*args)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    cotangent = (np.ones(out.shape) if out.size == 1
                 else np.random.default_rng(seed).standard_normal(out.shape))
    if out.requires_grad:
        out.backward(cotangent)

    def objective() -> float:
        with no_grad():
            return float(np.sum(cotangent * fn(*args).data))

    for i in checked:
        x = args[i]
        analytic = x.grad if x.grad is not None else np.zeros_like(x.data)
        numeric = _central_differences(objective, x.data, eps)
        _compare(i, x, analytic, numeric, atol, rtol)
    return True


def _float64_copy(x):
    """The float64 working copy of one input (see ``gradcheck``)."""
    if isinstance(x, Tensor) and np.issubdtype(x.dtype, np.floating):
        return Tensor(x.data.astype(np.float64), requires_grad=x.requires_grad, name=x.name)
    if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating):
        return Tensor(x.astype(np.float64), requires_grad=True)
    return x


def _central_differences(objective, data: np.ndarray, eps: float) -> np.ndarray:
    """(objective(data + ε eⱼ) − objective(data − ε eⱼ)) / 2ε for every element j, perturbing in place."""
    numeric = np.empty_like(data)
    for j in np.ndindex(data.shape):
        original = data[j]
        data[j] = original + eps
        above = objective()
        data[j] = original - eps
        below = objective()
        data[j] = original
        numeric[j] = (above - below) / (2 * eps)
    return numeric


def _compare(i: int, x: Tensor, analytic: np.ndarray, numeric: np.ndarray, atol: float, rtol: float) -> None:
    """Raise GradcheckError unless |analytic − numeric| ≤ atol + rtol·|numeric| everywhere (NaN fails)."""
    label = f"input {i}" + (f" {x.name!r}" if x.name else "")
    if analytic.shape != x.shape:
        raise GradcheckError(f"gradcheck: gradient of {label} has shape {analytic.shape}, "
                             f"the input has shape {x.shape}")
    difference = np.abs(analytic - numeric)
    allowed = atol + rtol * np.abs(numeric)
    with np.errstate(divide="ignore", invalid="ignore"):  # atol = 0 with a numeric 0: allowed is 0
        excess = np.where(difference <= allowed, 0.0, difference / allowed)
    excess = np.where(np.isnan(excess), np.inf, excess)
    if not (excess > 1).any():
        return
    worst = np.unravel_index(np.argmax(excess), x.shape)
    a, n = analytic[worst], numeric[worst]
    scale = np.maximum(np.abs(a), np.abs(n))
    relative = difference[worst] / scale if scale > 0 else np.inf
    raise GradcheckError(
        f"gradcheck: wrong gradient for {label} of shape {x.shape}: "
        f"{np.count_nonzero(excess > 1)} of {x.size} elements differ\n"
        f"  worst element {tuple(int(k) for k in worst)}: analytic {a:.8g}, numeric {n:.8g}, "
        f"|difference| {difference[worst]:.3g}, relative error {relative:.3g}\n"
        f"  tolerance: |analytic - numeric| <= atol + rtol*|numeric| with atol={atol:g}, rtol={rtol:g}")
