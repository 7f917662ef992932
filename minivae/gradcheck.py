"""Checking an engine gradient against central differences.

For inputs x₁…xₙ and a function f with output y, gradcheck compares the engine's vector-Jacobian
product uᵀ ∂y/∂xᵢ with central differences of f, where u is 1 for a one-element output and
otherwise a pseudo-random cotangent, so that every output element contributes. Two modes:

- exhaustive: every element j of xᵢ in turn, 2 evaluations of f per element,

      ∂(u·y)/∂xᵢ[j] ≈ (u·f(…, xᵢ + ε eⱼ, …) − u·f(…, xᵢ − ε eⱼ, …)) / 2ε;

- fast: the directional derivative uᵀ J v along a random unit direction v of xᵢ, a few (u, v)
  pairs, 2 evaluations of f per pair whatever the size of xᵢ,

      (∂(u·y)/∂xᵢ)·v ≈ (u·f(…, xᵢ + ε v, …) − u·f(…, xᵢ − ε v, …)) / 2ε.

  A failing direction is then localised: bisection over contiguous blocks of xᵢ's elements (each
  half checked along its own random direction, the worse half kept) down to a block of at most
  ``LOCALISE_BLOCK`` elements, which gets the exhaustive check, so that the report names an element.

A random direction tests the whole gradient at once: an error in a few elements of a large input is
seen in proportion to its share of the gradient's norm, so that the exhaustive mode remains the
check of record for small inputs (the default below ``FAST_ABOVE`` elements).

Everything runs in float64: inputs are copied, and ``params=`` (tensors a function holds, such as a
module's parameters) are cast in place for the duration of the check by ``in_float64``.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from .engine import Tensor, concatenate, enable_grad, gradients, no_grad

FAST_ABOVE = 1024
"""With ``fast=None``, inputs of more elements than this get the fast check, smaller ones the exhaustive one."""

LOCALISE_BLOCK = 16
"""The fast check's bisection stops at blocks of at most this many elements, then checks each one."""


class GradcheckError(AssertionError):
    """An engine gradient disagrees with its central-difference estimate."""


def gradcheck(fn, *inputs, params=None, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3, seed: int = 0,
              fast: bool | None = None, directions: int = 2, order: int = 1) -> bool:
    """Check ``fn``'s engine gradients with respect to ``inputs`` (and ``params``) against central differences.

    Floating Tensors are copied to float64 and keep their ``requires_grad`` and ``name``; floating
    ndarrays become float64 Tensors that require grad; anything else (integer indices, boolean
    masks, numbers) reaches ``fn`` unchanged.

    ``params``: tensors that ``fn`` uses without taking them as arguments — a ``Module`` (all its
    parameters, named as in ``named_parameters``) or an iterable of Tensors. They are checked in
    place: for the duration of the check they (and, for a module, its buffers) are float64
    (``in_float64``), and the check perturbs working copies of their arrays; afterwards, however the
    check ends (an error, Ctrl-C), their arrays and ``.grad`` are the ones they had. The engine's
    gradients are taken with ``gradients``, so that no ``.grad`` of any tensor (a checked one, a
    leaf ``fn`` closes over) is written. This is how a
    float32 model is checked::

        model = mv.nn.MLP([784, 400, 10])                    # float32 parameters
        mv.gradcheck(lambda x: model(x).tanh().sum(), x, params=model)

    ``fast``: True checks directional derivatives (uᵀ J v for ``directions`` random (u, v) pairs,
    O(1) evaluations of ``fn`` per input), False every element; None (default) takes the fast check
    for inputs of more than ``FAST_ABOVE`` elements. Either way a value passes when
    ``|analytic − numeric| ≤ atol + rtol·|numeric|`` and both are finite. ``seed`` fixes the
    cotangents and directions.

    ``order=2`` checks second derivatives instead (a gradgradcheck): the function checked is
    x ↦ ∂(w·fn(x))/∂x for a fixed random w, its gradients recorded with ``create_graph`` — so the
    engine's second derivatives are compared with central differences of its first derivatives.

    Returns True, or raises ``GradcheckError`` naming the input and an element (the worst one, or
    for the fast check the worst one of the block it localised), with both values. Raises
    ``ValueError`` if nothing requires grad, for an ``eps`` that is not a positive finite number,
    an ``atol`` or ``rtol`` that is not a non-negative finite one, or ``directions`` below 1;
    ``TypeError`` if ``fn`` returns no Tensor or mixes the float64 inputs with float32 tensors it
    holds (the message says to pass ``params=``).
    """
    _check_arguments(eps=eps, atol=atol, rtol=rtol, directions=directions)
    if order not in (1, 2):
        raise ValueError(f"gradcheck: order must be 1 or 2, got {order!r}")
    args = [_float64_copy(x) for x in inputs]
    leaves = [(_input_label(i, a), a) for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
    held = _named_params(params)
    if not leaves and not held:
        packed = any(isinstance(x, (tuple, list)) for x in inputs)
        raise ValueError("gradcheck: no input requires grad; pass Tensors with requires_grad=True "
                         "or floating ndarrays" + (", each as its own argument (gradcheck(fn, x, y), not "
                                                   "gradcheck(fn, (x, y)))" if packed else ""))
    with in_float64(params if _is_module(params) else [p for _, p in held]):
        for _, p in held:  # the check perturbs a working copy: in_float64 gives the original back on any exit
            p.data = p.data.copy()
        leaves += held
        if order == 2:
            _check_recorded_first_derivatives(fn, args, leaves, seed, atol, rtol)
            fn = _first_derivatives(fn, [x for _, x in leaves], seed)
        check = _Check(fn, args, [x for _, x in leaves], eps, atol, rtol, seed)
        for k, (label, x) in enumerate(leaves):
            if fast or (fast is None and x.size > FAST_ABOVE):
                check.directional(k, label, directions)
            else:
                check.exhaustive(k, label)
    return True


def _first_derivatives(fn, leaves: list, seed: int):
    """x ↦ the gradients of w·fn(x) with respect to every leaf, flattened into one vector and recorded
    (``create_graph``), for a fixed pseudo-random w: what ``order=2`` checks."""
    cotangents = {}

    def first(*args):
        with enable_grad():
            out = fn(*args)
            if not isinstance(out, Tensor):
                return out
            if out.shape not in cotangents:
                cotangents[out.shape] = np.random.default_rng(seed + 1).standard_normal(out.shape)
            grads = gradients((out * cotangents[out.shape]).sum(), leaves, create_graph=True)
            return concatenate([g.reshape(-1) for g in grads])
    return first


def _check_recorded_first_derivatives(fn, args, leaves, seed: int, atol: float, rtol: float) -> None:
    """The first derivatives that ``order=2`` differentiates — recorded with ``create_graph`` — must equal
    those of a plain backward pass: a recorded backward that is wrong but self-consistent would
    otherwise pass its own central differences."""
    tensors = [x for _, x in leaves]
    with enable_grad():
        out = fn(*args)
        if not isinstance(out, Tensor) or not out.requires_grad:
            return
        weighted = (out * np.random.default_rng(seed + 1).standard_normal(out.shape)).sum()
        recorded = gradients(weighted, tensors, create_graph=True)
        plain = gradients(weighted, tensors, create_graph=False)
    for (label, x), r, p in zip(leaves, recorded, plain):
        excess = _excess(r.data, p.data, atol, rtol)
        if (excess > 1).any():
            worst = np.unravel_index(np.argmax(excess), x.shape)
            raise GradcheckError(
                f"gradcheck: the first derivatives recorded with create_graph differ from backward's for "
                f"{label} of shape {x.shape}: {np.count_nonzero(excess > 1)} of {x.size} elements; element "
                f"{_index(worst)}: recorded {r.data[worst]:.8g}, backward {p.data[worst]:.8g}")


class _Check:
    """The function, its working arguments and leaves, and the engine's gradients for each cotangent."""

    def __init__(self, fn, args, leaves, eps, atol, rtol, seed):
        self.fn, self.args, self.leaves = fn, args, leaves
        self.eps, self.atol, self.rtol = eps, atol, rtol
        self.rng = np.random.default_rng(seed)
        with enable_grad():
            out = self._call()
        if not isinstance(out, Tensor):
            raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
        self.out_shape = out.shape
        self.cotangents, self.gradients = [], []
        self._add_cotangent(out)

    def _call(self) -> Tensor:
        try:
            return self.fn(*self.args)
        except TypeError as err:
            if "dtype" not in str(err):
                raise
            raise TypeError(f"gradcheck: fn failed on float64 inputs: {err} — if fn holds float32 tensors "
                            f"(such as a module's parameters), pass them as params=module (or params=[...]), or "
                            f"call gradcheck inside `with in_float64(module):` (from minivae.gradcheck)") from None

    def _add_cotangent(self, out: Tensor | None = None) -> None:
        """One more cotangent u and the engine's gradients uᵀ ∂y/∂x for every leaf (no ``.grad`` is touched)."""
        k = len(self.cotangents)
        if out is None:
            with enable_grad():
                out = self._call()
        u = (np.ones(out.shape) if out.size == 1 and k == 0
             else self.rng.standard_normal(out.shape))
        self.cotangents.append(u)
        self.gradients.append([g.data for g in gradients(out, self.leaves, grad_output=u, create_graph=False)])

    def objective(self, k: int) -> float:
        """u_k · fn(args), without a graph."""
        with no_grad():
            return float(np.sum(self.cotangents[k] * self._call().data))

    def along(self, k: int, x: Tensor, v: np.ndarray) -> float:
        """The central difference of u_k · fn along ``v`` in the leaf ``x``, which is left as it was."""
        return _central_difference(lambda: self.objective(k), x.data, ..., self.eps, v)

    def excess(self, analytic, numeric):
        """The tolerance test (``_excess``) with this check's atol and rtol."""
        return _excess(analytic, numeric, self.atol, self.rtol)

    # ----------------------------------------------------------------- the two modes
    def exhaustive(self, k: int, label: str) -> None:
        x, analytic = self.leaves[k], self.gradients[0][k]
        _check_shape(label, x, analytic)
        numeric = _central_differences(lambda: self.objective(0), x.data, self.eps, np.ndindex(x.shape))
        excess = self.excess(analytic, numeric)
        if (excess > 1).any():
            worst = np.unravel_index(np.argmax(excess), x.shape)
            raise GradcheckError(
                f"gradcheck: wrong gradient for {label} of shape {x.shape}: "
                f"{np.count_nonzero(excess > 1)} of {x.size} elements differ\n"
                f"  worst element {_index(worst)}: {_values(analytic[worst], numeric[worst])}\n"
                f"  {self._tolerance()}")

    def directional(self, k: int, label: str, directions: int) -> None:
        x = self.leaves[k]
        _check_shape(label, x, self.gradients[0][k])
        for d in range(directions):
            while len(self.cotangents) <= d:
                self._add_cotangent()
            g = self.gradients[d][k]
            v = self._direction(x.shape)
            analytic, numeric = float(np.sum(g * v)), self.along(d, x, v)
            if self.excess(analytic, numeric) > 1:
                self._localise(d, label, x, g, analytic, numeric)

    def _direction(self, shape, block: slice | None = None) -> np.ndarray:
        """A random unit vector of ``shape``, zero outside the flat ``block`` if given."""
        v = self.rng.standard_normal(shape)
        if block is not None:
            flat = np.zeros(v.size)
            flat[block] = v.reshape(-1)[block]
            v = flat.reshape(shape)
        norm = np.sqrt(np.sum(v * v))
        return v / norm if norm > 0 else v

    def _localise(self, d: int, label: str, x: Tensor, g: np.ndarray, analytic: float, numeric: float):
        """Bisect the flat elements of ``x`` down to a failing block, check it element by element, and raise."""
        lo, hi = 0, x.size
        while hi - lo > LOCALISE_BLOCK:
            middle = (lo + hi) // 2
            scores = []
            for block in (slice(lo, middle), slice(middle, hi)):
                v = self._direction(x.shape, block)
                scores.append(float(self.excess(np.sum(g * v), self.along(d, x, v))))
            if max(scores) <= 1:
                break  # neither half fails alone (the errors cancel, or lie at the tolerance): check this block
            lo, hi = (lo, middle) if scores[0] >= scores[1] else (middle, hi)
        if hi - lo > LOCALISE_BLOCK:  # stopped early: the first LOCALISE_BLOCK elements of the block
            hi = lo + LOCALISE_BLOCK
        flat = [np.unravel_index(j, x.shape) for j in range(lo, hi)]
        numeric_block = _central_differences(lambda: self.objective(d), x.data, self.eps, flat)
        analytic_block = np.array([g[j] for j in flat])
        numeric_block = np.array([numeric_block[j] for j in flat])
        excess = self.excess(analytic_block, numeric_block)
        block = f"elements {lo}…{hi - 1} (flat, {hi - lo} of {x.size})"
        if (excess > 1).any():
            w = int(np.argmax(excess))
            where = (f"  localised by bisection to {block}: {np.count_nonzero(excess > 1)} of them differ\n"
                     f"  worst element {_index(flat[w])}: {_values(analytic_block[w], numeric_block[w])}\n")
        else:
            where = (f"  no single element of {block} differs beyond the tolerance: the error is spread over "
                     f"many elements; fast=False checks each one\n")
        raise GradcheckError(
            f"gradcheck: wrong gradient for {label} of shape {x.shape} (fast check, direction {d + 1}): "
            f"directional derivative uᵀJv {_values(analytic, numeric)}\n{where}  {self._tolerance()}")

    def _tolerance(self) -> str:
        return (f"tolerance: |analytic - numeric| <= atol + rtol*|numeric| with atol={self.atol:g}, "
                f"rtol={self.rtol:g}, both finite")


# ------------------------------------------------------------------------ float64 for tensors a function holds
@contextlib.contextmanager
def in_float64(*holders):
    """Run the enclosed code with the floating tensors that ``holders`` keep cast to float64, in place.

    Each holder is a Tensor (its data is cast, the object stays the same), a ``Module`` (its
    ``parameters()`` and ``buffers()``, such as the VAE's prior; a module takes its dtype from
    them), or an iterable of these. On exit every tensor gets back its original array and
    ``.grad`` (the same objects), even after an error. Nothing is copied for float64 tensors;
    integer and boolean tensors are left alone. Raises TypeError for any other holder.

        from minivae.gradcheck import in_float64

        with in_float64(model):
            mv.gradcheck(lambda x: model(x).sum(), x, params=model.parameters())
    """
    held = {}
    for holder in holders:
        held.update((id(t), t) for t in _held_tensors(holder))
    kept = [(t, t.data, t.grad) for t in held.values()]  # every one is restored, float64 or not
    try:
        for t, data, grad in kept:
            if t.dtype.kind == "f" and t.dtype != np.float64:
                t.data = data.astype(np.float64)
                t.grad = None if grad is None else np.asarray(grad, np.float64)
        yield
    finally:
        for t, data, grad in kept:
            t.data, t.grad = data, grad


def _held_tensors(holder) -> list:
    """The tensors a holder of ``in_float64`` keeps: itself, a module's parameters and buffers, or those of
    each item of an iterable."""
    if isinstance(holder, Tensor):
        return [holder]
    if _is_module(holder):
        return [*holder.parameters(), *holder.buffers()]
    if isinstance(holder, (str, bytes, np.ndarray)) or not hasattr(holder, "__iter__"):
        raise TypeError(f"in_float64: expected Tensors, Modules or iterables of them, got {type(holder).__name__}")
    return [t for item in holder for t in _held_tensors(item)]


def _is_module(obj) -> bool:
    return callable(getattr(obj, "named_parameters", None))


def _named_params(params) -> list:
    """(label, tensor) pairs for ``params``: a module's named parameters, or the tensors of an iterable."""
    if params is None:
        return []
    if _is_module(params):
        return [(f"parameter {name!r}", p) for name, p in params.named_parameters()]
    if isinstance(params, Tensor):
        params = [params]
    named = []
    for i, p in enumerate(params):
        if not isinstance(p, Tensor) or p.op is not None or not p.requires_grad:
            raise TypeError(f"gradcheck: params must be a Module or leaf Tensors that require grad; item {i} is "
                            f"{p!r}")
        named.append((f"parameter {i}" + (f" {p.name!r}" if p.name else ""), p))
    return named


def _float64_copy(x):
    """The float64 working copy of one input (see ``gradcheck``)."""
    if isinstance(x, Tensor) and np.issubdtype(x.dtype, np.floating):
        return Tensor(x.data.astype(np.float64), requires_grad=x.requires_grad, name=x.name)
    if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating):
        return Tensor(x.astype(np.float64), requires_grad=True)
    return x


def _input_label(i: int, x: Tensor) -> str:
    return f"input {i}" + (f" {x.name!r}" if x.name else "")


def _central_differences(objective, data: np.ndarray, eps: float, indices) -> np.ndarray:
    """The central difference of ``objective`` in each element j given, one by one (see ``_central_difference``)."""
    numeric = np.zeros_like(data)
    for j in indices:
        numeric[j] = _central_difference(objective, data, j, eps)
    return numeric


def _central_difference(objective, data: np.ndarray, index, eps: float, direction=1.0) -> float:
    """(objective() at data[index] + ε·direction − objective() at data[index] − ε·direction) / 2ε.

    ``index`` is one element (then direction is 1: a partial derivative) or ``...`` (the whole array, along
    ``direction``: a directional derivative). ``data`` is perturbed in place and given back its values
    however the objective ends (an error, Ctrl-C).
    """
    original = np.copy(data[index])
    try:
        data[index] = original + eps * direction
        above = objective()
        data[index] = original - eps * direction
        below = objective()
    finally:
        data[index] = original
    return (above - below) / (2 * eps)


def _excess(analytic, numeric, atol: float, rtol: float) -> np.ndarray:
    """|analytic − numeric| / (atol + rtol·|numeric|), elementwise: the one tolerance test (> 1 fails), inf
    where either value is not finite."""
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    difference = np.abs(analytic - numeric)
    allowed = atol + rtol * np.abs(numeric)
    with np.errstate(divide="ignore", invalid="ignore"):  # atol = 0 with a numeric 0: allowed is 0
        excess = np.where(difference <= allowed, 0.0, difference / allowed)
    return np.where(np.isfinite(analytic) & np.isfinite(numeric) & ~np.isnan(excess), excess, np.inf)


def _check_arguments(**values) -> None:
    """A one-line ValueError for a step, a tolerance or a number of directions gradcheck cannot use."""
    for name in ("eps", "atol", "rtol"):
        value, positive = values[name], name == "eps"
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
        if not number or not math.isfinite(value) or value < 0 or (positive and value == 0):
            kind = "a positive" if positive else "a non-negative"
            raise ValueError(f"gradcheck: {name} must be {kind} finite number, got {value!r}")
    directions = values["directions"]
    if isinstance(directions, (bool, np.bool_)) or not isinstance(directions, (int, np.integer)) or directions < 1:
        raise ValueError(f"gradcheck: directions must be an int of at least 1, got {directions!r}")


def _check_shape(label: str, x: Tensor, analytic: np.ndarray) -> None:
    if analytic.shape != x.shape:
        raise GradcheckError(f"gradcheck: gradient of {label} has shape {analytic.shape}, "
                             f"the input has shape {x.shape}")


def _index(index) -> tuple:
    return tuple(int(k) for k in index)


def _values(analytic: float, numeric: float) -> str:
    """Both values, their difference and relative error: inf when a value is infinite, nan only when one is nan."""
    analytic, numeric = float(analytic), float(numeric)
    difference = abs(analytic - numeric)
    if math.isnan(analytic) or math.isnan(numeric):
        relative = math.nan
    elif math.isinf(analytic) or math.isinf(numeric):
        relative = math.inf
    else:
        scale = max(abs(analytic), abs(numeric))
        relative = difference / scale if scale > 0 else 0.0
    return (f"analytic {analytic:.8g}, numeric {numeric:.8g}, |difference| {difference:.3g}, "
            f"relative error {relative:.3g}")
