"""The engine's operations: each forward next to its vector-Jacobian products (VJPs).

An op is a NumPy function of arrays made into a function of Tensors by ``@primitive``; ``defvjp``
then gives one VJP per tensor argument, ``vjp(g, ans, *args, **params) -> gradient of that
argument``, where ``g`` is the gradient of the output, ``ans`` the output and ``args`` the input
arrays. A VJP may return an array of the broadcast output shape: the engine sums it back to the
argument's shape.

Tensor arguments come first and static parameters (axis, shape, ...) follow as keywords. Python
and NumPy scalars take the dtype of the op's floating-point tensors; tensors of two different
floating dtypes are an error, never a silent cast.
"""
from __future__ import annotations

import inspect
import numbers

import numpy as np

from .tensor import Tensor


class Op:
    """A differentiable operation: a NumPy forward and one VJP per tensor argument."""

    def __init__(self, forward, variadic: bool = False):
        self.name = forward.__name__.strip("_")
        self.forward = forward
        self.n_inputs = None if variadic else forward.__code__.co_argcount  # None: any number of tensors
        self.static = [p.name for p in inspect.signature(forward).parameters.values() if p.kind is p.KEYWORD_ONLY]
        self.defaults = forward.__kwdefaults__ or {}
        self.vjps = ()

    def defvjp(self, *vjps) -> "Op":
        """Register the VJPs, one per tensor argument in order (None where there is no gradient)."""
        self.vjps = vjps
        return self

    def vjp(self, i: int, g: np.ndarray, ans: np.ndarray, arrays: list, params: dict) -> np.ndarray:
        """The gradient for tensor argument ``i`` given the output gradient ``g``."""
        vjp = self.vjps[0] if self.n_inputs is None else self.vjps[i]
        if vjp is None:
            raise RuntimeError(f"{self.name}: argument {i} is not differentiable")
        if self.n_inputs is None:
            return vjp(i, g, ans, *arrays, **params)
        return vjp(g, ans, *arrays, **params)

    def vjps_done(self, params: dict) -> None:
        """Called by ``backward`` once all the VJPs of one node have run; nothing to do for a plain op."""

    def __call__(self, *args, **params) -> Tensor:
        if self.n_inputs is not None and len(args) != self.n_inputs:
            raise TypeError(f"{self.name}: takes {self.n_inputs} tensor argument(s), got {len(args)}; "
                            f"pass {', '.join(self.static) or 'no other parameters'} by keyword")
        unknown = params.keys() - set(self.static)
        params = {**self.defaults, **params}
        if unknown or params.keys() != set(self.static):
            raise TypeError(f"{self.name}: takes the parameters {self.static}, got {sorted(unknown or params)}")
        tensors = as_tensors(self.name, args)
        arrays = [t.data for t in tensors]
        try:
            out = self.forward(*arrays, **params)
        except (ValueError, IndexError, TypeError) as err:  # NumPy's errors, restated with the op's name
            if str(err).startswith(f"{self.name}:"):
                raise
            shapes = ", ".join(str(a.shape) for a in arrays)
            kind = next(kind for kind in (ValueError, IndexError, TypeError) if isinstance(err, kind))
            raise kind(f"{self.name}: cannot apply to shapes {shapes}: {err}") from None
        return Tensor.from_op(out, self, tuple(tensors), params)

    def __repr__(self) -> str:
        return f"<op {self.name}>"


def primitive(forward=None, *, variadic: bool = False):
    """Decorator making a NumPy function an ``Op``.

    Its positional parameters are the tensors (any number of them if ``variadic``); its
    keyword-only parameters, with their defaults, are the static parameters.
    """
    def make(fn):
        return Op(fn, variadic)
    return make if forward is None else make(forward)


def as_tensors(name: str, args) -> list:
    """Wrap every argument as a Tensor.

    Numbers and integer arrays take the dtype of the floating tensors among the arguments, so that
    the result keeps it; booleans stay booleans.
    """
    dtype = None
    for a in args:
        data = a.data if isinstance(a, Tensor) else a
        if isinstance(data, np.ndarray) and data.dtype.kind == "f":
            if dtype is None:
                dtype = data.dtype
            elif data.dtype != dtype:
                raise TypeError(f"{name}: dtypes differ ({dtype} and {data.dtype}); "
                                f"convert one explicitly with .astype")
    tensors = []
    for a in args:
        if not isinstance(a, (Tensor, np.ndarray, numbers.Number, np.generic)):
            raise TypeError(f"{name}: expected a Tensor, an ndarray or a number, got {type(a).__name__}")
        data = a.data if isinstance(a, Tensor) else np.asarray(a)
        if dtype is not None and data.dtype != dtype and data.dtype.kind in "iuf":
            tensors.append(Tensor(data.astype(dtype)))
        else:
            tensors.append(a if isinstance(a, Tensor) else Tensor(data))
    return tensors


def _expand_reduced(g: np.ndarray, axis, keepdims: bool) -> np.ndarray:
    """Bring a reduction's output gradient back to a shape that broadcasts against its input."""
    if axis is not None and not keepdims:
        g = np.expand_dims(g, axis)
    return g


def _stable_sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) = 1 / (1 + e⁻ˣ) = eˣ / (1 + eˣ), taking the form whose exponential is exp(-|x|) ≤ 1.

    No exponential overflows, and σ keeps its relative precision deep into the negative tail.
    """
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


def _tie_split(g: np.ndarray, winner: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Route ``g`` where ``winner`` holds; split it in half at ties."""
    return np.where(tie, g * 0.5, g * winner)


# ------------------------------------------------------------------------ arithmetic
@primitive
def add(x, y):
    return x + y
add.defvjp(lambda g, ans, x, y: g,
           lambda g, ans, x, y: g)


@primitive
def sub(x, y):
    return x - y
sub.defvjp(lambda g, ans, x, y: g,
           lambda g, ans, x, y: -g)


@primitive
def mul(x, y):
    return x * y
mul.defvjp(lambda g, ans, x, y: g * y,
           lambda g, ans, x, y: g * x)


@primitive
def div(x, y):
    return x / y
div.defvjp(lambda g, ans, x, y: g / y,
           lambda g, ans, x, y: -g * ans / y)


@primitive
def pow(x, y):  # noqa: A001  (x ** y)
    return x ** y
pow.defvjp(lambda g, ans, x, y: g * y * x ** (y - 1),
           lambda g, ans, x, y: g * ans * np.log(x))


@primitive
def neg(x):
    return -x
neg.defvjp(lambda g, ans, x: -g)


def _check_matmul(x, y, name="matmul"):
    if x.ndim < 2 or y.ndim < 2:
        raise ValueError(f"{name}: {x.shape} @ {y.shape} — operands must be at least 2-D (reshape vectors "
                         f"to (1, n) or (n, 1))")
    if x.shape[-1] != y.shape[-2]:
        raise ValueError(f"{name}: {x.shape} @ {y.shape} — inner dimensions {x.shape[-1]} and "
                         f"{y.shape[-2]} differ")


@primitive
def matmul(x, y):
    _check_matmul(x, y)
    return x @ y
matmul.defvjp(lambda g, ans, x, y: g @ np.swapaxes(y, -1, -2),
              lambda g, ans, x, y: np.swapaxes(x, -1, -2) @ g)


@primitive
def linear(x, weight, bias):
    """y = x Wᵀ + b for x of shape (batch, in), W of shape (out, in), b of shape (out,)."""
    if x.ndim != 2 or weight.ndim != 2 or bias.shape != weight.shape[:1]:
        raise ValueError(f"linear: expects x (batch, in), weight (out, in) and bias (out,), got shapes "
                         f"{x.shape}, {weight.shape} and {bias.shape}")
    _check_matmul(x, weight.T, "linear")
    return x @ weight.T + bias
linear.defvjp(lambda g, ans, x, w, b: g @ w,
              lambda g, ans, x, w, b: g.T @ x,
              lambda g, ans, x, w, b: g.sum(axis=0))


# ------------------------------------------------------------------------ elementwise functions
@primitive
def exp(x):
    return np.exp(x)
exp.defvjp(lambda g, ans, x: g * ans)


@primitive
def log(x):
    return np.log(x)
log.defvjp(lambda g, ans, x: g / x)


@primitive
def log1p(x):
    return np.log1p(x)
log1p.defvjp(lambda g, ans, x: g / (1 + x))


@primitive
def sqrt(x):
    return np.sqrt(x)
sqrt.defvjp(lambda g, ans, x: g * 0.5 / ans)


@primitive
def abs(x):  # noqa: A001
    return np.abs(x)
abs.defvjp(lambda g, ans, x: g * np.sign(x))


@primitive
def maximum(x, y):
    return np.maximum(x, y)
maximum.defvjp(lambda g, ans, x, y: _tie_split(g, x > y, x == y),
               lambda g, ans, x, y: _tie_split(g, y > x, x == y))


@primitive
def minimum(x, y):
    return np.minimum(x, y)
minimum.defvjp(lambda g, ans, x, y: _tie_split(g, x < y, x == y),
               lambda g, ans, x, y: _tie_split(g, y < x, x == y))


@primitive
def where(condition, x, y):
    return np.where(condition, x, y)
where.defvjp(None,
             lambda g, ans, c, x, y: np.where(c, g, 0),
             lambda g, ans, c, x, y: np.where(c, 0, g))


@primitive
def relu(x):
    return np.maximum(x, 0)
relu.defvjp(lambda g, ans, x: g * (x > 0))


@primitive
def tanh(x):
    return np.tanh(x)
tanh.defvjp(lambda g, ans, x: g * (1 - ans * ans))


@primitive
def sigmoid(x):
    return _stable_sigmoid(x)
sigmoid.defvjp(lambda g, ans, x: g * ans * (1 - ans))


@primitive
def softplus(x):
    """log(1 + e^x), computed as logaddexp(0, x) so that it never overflows."""
    return np.logaddexp(0, x)
softplus.defvjp(lambda g, ans, x: g * _stable_sigmoid(x))


@primitive
def log_sigmoid(x):
    """log σ(x) = -softplus(-x)."""
    return -np.logaddexp(0, -x)
log_sigmoid.defvjp(lambda g, ans, x: g * _stable_sigmoid(-x))


# ------------------------------------------------------------------------ reductions
@primitive
def sum(x, *, axis=None, keepdims=False):  # noqa: A001
    return np.sum(x, axis=axis, keepdims=keepdims)
sum.defvjp(lambda g, ans, x, axis, keepdims: np.broadcast_to(_expand_reduced(g, axis, keepdims), x.shape))


@primitive
def mean(x, *, axis=None, keepdims=False):
    return np.mean(x, axis=axis, keepdims=keepdims)
mean.defvjp(lambda g, ans, x, axis, keepdims:
            np.broadcast_to(_expand_reduced(g, axis, keepdims) * (ans.size / (x.size or 1)), x.shape))


def _max_vjp(g, ans, x, axis, keepdims):
    """The gradient goes to the maxima, shared equally among ties."""
    winners = x == _expand_reduced(ans, axis, keepdims)
    return _expand_reduced(g, axis, keepdims) * winners / winners.sum(axis=axis, keepdims=True, dtype=g.dtype)


@primitive
def max(x, *, axis=None, keepdims=False):  # noqa: A001
    return np.max(x, axis=axis, keepdims=keepdims)
max.defvjp(_max_vjp)


@primitive
def logsumexp(x, *, axis=None, keepdims=False):
    """log Σ exp(x) = m + log Σ exp(x - m) with m the maximum, so no term overflows."""
    shifted, m = _exp_below_max(x, axis)
    out = m + np.log(np.sum(shifted, axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


def _exp_below_max(x, axis):
    """exp(x - m) and m, the maximum along ``axis`` (0 where it is infinite), kept as a size-1 axis."""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return np.exp(x - m), m


def _logsumexp_vjp(g, ans, x, axis, keepdims):
    """g · softmax(x), as exp(x - m) / Σ exp(x - m): exact where exp(x - ans) would lose ans's rounding."""
    shifted, _ = _exp_below_max(x, axis)
    return _expand_reduced(g, axis, keepdims) * shifted / np.sum(shifted, axis=axis, keepdims=True)


logsumexp.defvjp(_logsumexp_vjp)


# ------------------------------------------------------------------------ shapes and indexing
@primitive
def reshape(x, *, shape):
    return np.reshape(x, shape)
reshape.defvjp(lambda g, ans, x, shape: g.reshape(x.shape))


@primitive
def transpose(x, *, axes=None):
    return np.transpose(x, axes)
transpose.defvjp(lambda g, ans, x, axes:
                 np.transpose(g, None if axes is None else np.argsort(np.asarray(axes) % x.ndim)))


def _getitem_vjp(g, ans, x, index):
    """Scatter-add ``g`` into zeros: repeated integer indices add up."""
    grad = np.zeros_like(x)
    np.add.at(grad, index, g)
    return grad


@primitive
def _getitem(x, *, index):
    return x[index]
_getitem.defvjp(_getitem_vjp)


def getitem(x, index) -> Tensor:
    """``x[index]``: slices, integers, ``None``, ellipsis, boolean masks and integer arrays."""
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return _getitem(x, index=index)


@primitive(variadic=True)
def _concatenate(*xs, axis=0):
    return np.concatenate(xs, axis=axis)
_concatenate.defvjp(lambda i, g, ans, *xs, axis:
                    np.split(g, np.cumsum([x.shape[axis] for x in xs])[:-1], axis=axis)[i])


def concatenate(tensors, axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    return _concatenate(*tensors, axis=axis)


@primitive(variadic=True)
def _stack(*xs, axis=0):
    return np.stack(xs, axis=axis)
_stack.defvjp(lambda i, g, ans, *xs, axis: np.take(g, i, axis=axis))


def stack(tensors, axis: int = 0) -> Tensor:
    """Join tensors along a new axis."""
    return _stack(*tensors, axis=axis)


# ------------------------------------------------------------------------ losses
_REDUCTIONS = {"none": lambda v: v, "sum": np.sum, "mean": np.mean}


@primitive
def binary_cross_entropy_with_logits(logits, targets, *, reduction="mean"):
    """ℓ(z, t) = softplus(z) - t·z = max(z, 0) - t·z + log1p(exp(-|z|)), finite for every finite z."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"binary_cross_entropy_with_logits: reduction must be one of {sorted(_REDUCTIONS)}, "
                         f"got {reduction!r}")
    loss = np.maximum(logits, 0) - targets * logits + np.log1p(np.exp(-np.abs(logits)))
    return _REDUCTIONS[reduction](loss)


def _bce_scale(g, logits, targets, reduction):
    """The output gradient per element: g itself, broadcast, or divided by the element count."""
    shape = np.broadcast_shapes(logits.shape, targets.shape)
    return g if reduction == "none" else np.broadcast_to(g / (1 if reduction == "sum" else np.prod(shape, dtype=g.dtype)), shape)


binary_cross_entropy_with_logits.defvjp(
    lambda g, ans, z, t, reduction: _bce_scale(g, z, t, reduction) * (_stable_sigmoid(z) - t),
    lambda g, ans, z, t, reduction: _bce_scale(g, z, t, reduction) * -z)
