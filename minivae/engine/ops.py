"""The engine's operations: each forward next to its backward, one place per op.

An op is a NumPy function of arrays made into a function of Tensors by ``@primitive``. Its
backward, registered with ``@op.defvjp``, has one convention for every op::

    @primitive
    def mul(x, y):                    # tensor arguments first, static parameters keyword-only
        return x * y

    @mul.defvjp
    def mul_vjp(ctx, g):              # g: the gradient of the output
        x, y = ctx.inputs             # also ctx.ans (the output), ctx.saved, ctx.needs_grad, ctx.<static>
        return g * y, g * x           # the gradients of all tensor arguments at once (None: none)

A gradient may have the broadcast output's shape: the engine sums it back to its argument's shape.
An op whose forward keeps intermediate results for its backward is declared ``@primitive(saves=True)``
and returns ``(output, saved)``; the backward finds them in ``ctx.saved``.

The backward code is written with the engine's own functions, and every op applied to plain arrays
(no Tensor among its arguments) is just its NumPy forward and returns an array, as in HIPS autograd.
So the one backward serves both passes: a plain ``backward`` runs it on arrays, at NumPy's speed;
``backward(create_graph=True)`` runs it on Tensors, recording a graph that can be differentiated
again.

Python and NumPy scalars take the dtype of the op's floating-point tensors; tensors of two
different floating dtypes are an error, never a silent cast.
"""
from __future__ import annotations

import builtins
import inspect
import numbers

import numpy as np

from .tensor import Tensor, accumulated, unbroadcast


class Op:
    """A differentiable operation: a NumPy forward and its backward (see the module docstring)."""

    def __init__(self, forward, saves: bool = False, twice_differentiable: bool = True,
                 backward_reads_values: bool = True):
        self.name = forward.__name__.strip("_")
        self.forward = forward
        self.saves = saves
        self.twice_differentiable = twice_differentiable
        self.backward_reads_values = backward_reads_values
        parameters = inspect.signature(forward).parameters.values()
        variadic = builtins.any(p.kind is p.VAR_POSITIONAL for p in parameters)
        self.n_inputs = None if variadic else forward.__code__.co_argcount  # None: any number of tensors
        self.static = [p.name for p in parameters if p.kind is p.KEYWORD_ONLY]
        self.defaults = forward.__kwdefaults__ or {}
        self.vjp = None

    def defvjp(self, vjp):
        """Register the backward ``vjp(ctx, g) -> gradients of all tensor arguments``; usable as a decorator."""
        self.vjp = vjp
        return vjp

    def backward(self, ctx, g) -> tuple:
        """The gradients of the op's tensor arguments, one per argument (None where there is none)."""
        if self.vjp is None:
            raise RuntimeError(f"{self.name}: no backward is defined")
        if isinstance(g, Tensor) and not self.twice_differentiable:
            raise RuntimeError(f"{self.name}: its backward is a fused kernel, which cannot be differentiated "
                               f"again (create_graph); use the reference kernels (minivae.kernels.use('reference'))")
        grads = self.vjp(ctx, g)
        if not isinstance(grads, tuple) or len(grads) != len(ctx.needs_grad):
            got = f"{len(grads)} values" if isinstance(grads, tuple) else type(grads).__name__
            raise RuntimeError(f"{self.name}: its backward must return a tuple of {len(ctx.needs_grad)} gradients "
                               f"(one per tensor argument), returned {got}")
        return grads

    def __call__(self, *args, **static):
        if self.n_inputs is not None and len(args) != self.n_inputs:
            raise TypeError(f"{self.name}: takes {self.n_inputs} tensor argument(s), got {len(args)}; "
                            f"pass {', '.join(self.static) or 'no other parameters'} by keyword")
        if static.keys() != self.defaults.keys() or len(static) != len(self.static):
            unknown = static.keys() - set(self.static)
            static = {**self.defaults, **static}
            if unknown or static.keys() != set(self.static):
                raise TypeError(f"{self.name}: takes the parameters {self.static}, got {sorted(unknown or static)}")
        tensors = builtins.any(isinstance(a, Tensor) for a in args)
        arrays = as_arrays(self.name, args)
        try:
            out = self.forward(*arrays, **static)
        except (ValueError, IndexError, TypeError) as err:  # NumPy's errors, restated with the op's name
            if str(err).startswith(f"{self.name}:"):
                raise
            shapes = ", ".join(str(a.shape) for a in arrays)
            kind = next(kind for kind in (ValueError, IndexError, TypeError) if isinstance(err, kind))
            raise kind(f"{self.name}: cannot apply to shapes {shapes}: {err}") from None
        out, saved = out if self.saves else (out, None)
        if not tensors:
            return out
        parents = tuple(a if isinstance(a, Tensor) and a.data is x else Tensor(x) for a, x in zip(args, arrays))
        return Tensor.from_op(out, self, parents, static, saved)

    def __repr__(self) -> str:
        return f"<op {self.name}>"


def primitive(forward=None, *, saves: bool = False, twice_differentiable: bool = True,
              backward_reads_values: bool = True):
    """Decorator making a NumPy function an ``Op``.

    Its positional parameters are the tensors (any number of them with ``*xs``); its keyword-only
    parameters, with their defaults, are the static parameters. ``saves``: the forward returns
    ``(output, saved)``. ``twice_differentiable=False``: the backward works on arrays only (a fused
    kernel), and ``create_graph`` through this op is an error naming it. ``backward_reads_values=False``:
    the backward reads only the output gradient, the shapes and the static parameters, never a value
    (so the captured step computes it once where its output gradient is a constant).
    """
    def make(fn):
        return Op(fn, saves, twice_differentiable, backward_reads_values)
    return make if forward is None else make(forward)


def as_arrays(name: str, args) -> list:
    """Every argument as an ndarray.

    Numbers and integer arrays take the dtype of the floating arrays among the arguments, so that
    the result keeps it; booleans stay booleans. Two floating dtypes are a TypeError.
    """
    dtype = scalar_dtype = None
    for a in args:
        data = a.data if isinstance(a, Tensor) else a
        if isinstance(data, np.ndarray) and data.dtype.kind == "f":
            if dtype is None:
                dtype = data.dtype
            elif data.dtype != dtype:
                raise TypeError(f"{name}: dtypes differ ({dtype} and {data.dtype}); "
                                f"convert one explicitly with .astype")
        elif isinstance(data, np.floating) and scalar_dtype is None:
            scalar_dtype = data.dtype  # NumPy scalars follow the arrays, or set the dtype where there are none
    dtype = dtype or scalar_dtype
    arrays = []
    for a in args:
        if isinstance(a, Tensor):
            data = a.data
        elif isinstance(a, (np.ndarray, numbers.Number, np.generic)):
            data = np.asarray(a)
        else:
            raise TypeError(f"{name}: expected a Tensor, an ndarray or a number, got {type(a).__name__}")
        if dtype is not None and data.dtype != dtype and data.dtype.kind in "iuf":
            data = data.astype(dtype)
        arrays.append(data)
    return arrays


def value(x):
    """The array of a Tensor, or ``x`` itself: for masks and counts, which are constants of the graph."""
    return x.data if isinstance(x, Tensor) else x


def _keepdims_shape(shape: tuple, axis) -> tuple:
    """``shape`` with the reduced ``axis`` (None: every axis) kept as length 1."""
    if axis is None:
        return (1,) * len(shape)
    axes = {a % len(shape) for a in (axis if isinstance(axis, tuple) else (axis,))}
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _unreduce(g, x_shape: tuple, axis, keepdims: bool):
    """A reduction's output gradient, reshaped to broadcast against its input."""
    return g if keepdims else g.reshape(_keepdims_shape(x_shape, axis))


# ------------------------------------------------------------------------ arithmetic
@primitive(backward_reads_values=False)
def add(x, y):
    return x + y


@add.defvjp
def add_vjp(ctx, g):
    return g, g


@primitive(backward_reads_values=False)
def sub(x, y):
    return x - y


@sub.defvjp
def sub_vjp(ctx, g):
    return g, -g


@primitive
def mul(x, y):
    return x * y


@mul.defvjp
def mul_vjp(ctx, g):
    x, y = ctx.inputs
    return g * y, g * x


@primitive
def div(x, y):
    return x / y


@div.defvjp
def div_vjp(ctx, g):
    x, y = ctx.inputs
    return g / y, -g * ctx.ans / y


@primitive
def pow(x, y):  # noqa: A001  (x ** y)
    return x ** y


@pow.defvjp
def pow_vjp(ctx, g):
    """∂/∂x = y·x^(y-1) and ∂/∂y = x^y·log x, each 0 where its factor is 0 though the other is infinite.

    At x = 0 and y = 0, y·x^(y-1) is 0·∞ (true value 0); at x = 0 with y > 0, x^y·log x is 0·(-∞)
    (true value 0). At x = 0 and y = 0, ∂/∂y is 1·(-∞): the one-sided limit from x > 0 is -∞, but
    0^y is 0 for every y > 0 and 1 at y = 0, so the engine takes 0 there, as PyTorch and JAX do (an
    infinite gradient would poison a whole optimizer step). There the 0 is chosen before the
    infinite factor is formed (``where`` on a safe base), so that neither the gradient nor its own
    gradient meets 0·∞; everywhere else the formula stands as it is, and so do its derivatives.
    """
    x, y = ctx.inputs
    grad_x = grad_y = None
    x_is_0 = value(x) == 0
    if ctx.needs_grad[0]:
        zero_times_inf = x_is_0 & (value(y) == 0)
        with np.errstate(divide="ignore"):  # 0 ** negative: the derivative is truly infinite there
            grad_x = where(zero_times_inf, 0, g * y * x ** where(zero_times_inf, 1, y - 1))
    if ctx.needs_grad[1]:
        zero_times_inf = x_is_0 & (value(y) >= 0)
        grad_y = where(zero_times_inf, 0, g * ctx.ans * log(where(zero_times_inf, 1, x)))
    return grad_x, grad_y


@primitive(backward_reads_values=False)
def neg(x):
    return -x


@neg.defvjp
def neg_vjp(ctx, g):
    return (-g,)


def _check_matmul(x, y, name="matmul"):
    if x.ndim < 2 or y.ndim < 2:
        raise ValueError(f"{name}: {x.shape} @ {y.shape} — operands must be at least 2-D (reshape vectors "
                         f"to (1, n) or (n, 1))")
    if x.shape[-1] != y.shape[-2]:
        raise ValueError(f"{name}: {x.shape} @ {y.shape} — inner dimensions {x.shape[-1]} and "
                         f"{y.shape[-2]} differ")


def _swap_last(x):
    """x with its last two axes exchanged."""
    axes = list(range(x.ndim))
    axes[-2], axes[-1] = axes[-1], axes[-2]
    return transpose(x, axes=tuple(axes))


@primitive
def matmul(x, y):
    _check_matmul(x, y)
    return x @ y


@matmul.defvjp
def matmul_vjp(ctx, g):
    x, y = ctx.inputs
    return (g @ _swap_last(y) if ctx.needs_grad[0] else None,
            _swap_last(x) @ g if ctx.needs_grad[1] else None)


# ------------------------------------------------------------------------ elementwise functions
@primitive
def exp(x):
    return np.exp(x)


@exp.defvjp
def exp_vjp(ctx, g):
    return (g * ctx.ans,)


@primitive
def log(x):
    return np.log(x)


@log.defvjp
def log_vjp(ctx, g):
    x, = ctx.inputs
    return (g / x,)


@primitive
def log1p(x):
    return np.log1p(x)


@log1p.defvjp
def log1p_vjp(ctx, g):
    x, = ctx.inputs
    return (g / (1 + x),)


@primitive
def sqrt(x):
    return np.sqrt(x)


@sqrt.defvjp
def sqrt_vjp(ctx, g):
    return (g * 0.5 / ctx.ans,)


@primitive
def sign(x):
    """-1, 0 or 1; its derivative is 0 wherever it exists."""
    return np.sign(x)


@sign.defvjp
def sign_vjp(ctx, g):
    return (None,)


@primitive
def abs(x):  # noqa: A001
    return np.abs(x)


@abs.defvjp
def abs_vjp(ctx, g):
    x, = ctx.inputs
    return (g * sign(x),)


def _tie_split(g, winner: np.ndarray, tie: np.ndarray):
    """Route ``g`` where ``winner`` holds; split it in half at ties.

    Selected, not multiplied by the mask: an infinite ``g`` at a loser gives 0 there, not 0·∞ = NaN.
    """
    return where(tie, g * 0.5, where(winner, g, 0))


@primitive
def maximum(x, y):
    return np.maximum(x, y)


@maximum.defvjp
def maximum_vjp(ctx, g):
    x, y = (value(a) for a in ctx.inputs)
    return _tie_split(g, x > y, x == y), _tie_split(g, y > x, x == y)


@primitive
def minimum(x, y):
    return np.minimum(x, y)


@minimum.defvjp
def minimum_vjp(ctx, g):
    x, y = (value(a) for a in ctx.inputs)
    return _tie_split(g, x < y, x == y), _tie_split(g, y < x, x == y)


@primitive
def where(condition, x, y):
    return np.where(condition, x, y)


@where.defvjp
def where_vjp(ctx, g):
    condition = value(ctx.inputs[0])
    return None, where(condition, g, 0), where(condition, 0, g)


@primitive
def relu(x):
    return np.maximum(x, 0)


@relu.defvjp
def relu_vjp(ctx, g):
    return (where(value(ctx.inputs[0]) > 0, g, 0),)  # selected: an infinite g where x <= 0 gives 0


@primitive
def tanh(x):
    return np.tanh(x)


@tanh.defvjp
def tanh_vjp(ctx, g):
    return (g * (1 - ctx.ans * ctx.ans),)


def _stable_sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) = 1 / (1 + e⁻ˣ) = eˣ / (1 + eˣ), taking the form whose exponential is exp(-|x|) ≤ 1.

    No exponential overflows, and σ keeps its relative precision deep into the negative tail.
    """
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


@primitive
def sigmoid(x):
    return _stable_sigmoid(x)


@sigmoid.defvjp
def sigmoid_vjp(ctx, g):
    """σ'(x) = σ(x) σ(-x): both factors keep their relative precision (1 - σ(x) cancels for x > 0)."""
    x, = ctx.inputs
    return (g * ctx.ans * sigmoid(-x),)


@primitive
def softplus(x):
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no exponential overflows, and log1p keeps the tail exact."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


@softplus.defvjp
def softplus_vjp(ctx, g):
    x, = ctx.inputs
    return (g * sigmoid(x),)


@primitive
def log_sigmoid(x):
    """log σ(x) = -softplus(-x)."""
    return -np.logaddexp(0, -x)


@log_sigmoid.defvjp
def log_sigmoid_vjp(ctx, g):
    x, = ctx.inputs
    return (g * sigmoid(-x),)


# ------------------------------------------------------------------------ reductions and broadcasting
@primitive(backward_reads_values=False)
def sum(x, *, axis=None, keepdims=False):  # noqa: A001
    """Σ x over ``axis``; float32 accumulates in float64 and is rounded once, to float32; booleans count."""
    return accumulated(np.sum, x, axis, keepdims)


@sum.defvjp
def sum_vjp(ctx, g):
    shape = ctx.inputs[0].shape
    return (broadcast_to(_unreduce(g, shape, ctx.axis, ctx.keepdims), shape=shape),)


@primitive(backward_reads_values=False)
def mean(x, *, axis=None, keepdims=False):
    """The mean over ``axis``, accumulated as ``sum`` is; the mean of booleans is a fraction."""
    return accumulated(np.mean, x, axis, keepdims)


@mean.defvjp
def mean_vjp(ctx, g):
    x, = ctx.inputs
    per_element = ctx.ans.size / (x.size or 1)
    return (broadcast_to(_unreduce(g, x.shape, ctx.axis, ctx.keepdims) * per_element, shape=x.shape),)


@primitive
def max(x, *, axis=None, keepdims=False):  # noqa: A001
    return np.max(x, axis=axis, keepdims=keepdims)


@max.defvjp
def max_vjp(ctx, g):
    """The gradient goes to the maxima, shared equally among ties."""
    x = value(ctx.inputs[0])
    winners = x == _unreduce(value(ctx.ans), x.shape, ctx.axis, ctx.keepdims)
    share = (winners / winners.sum(axis=ctx.axis, keepdims=True)).astype(x.dtype)
    return (where(winners, _unreduce(g, x.shape, ctx.axis, ctx.keepdims) * share, 0),)  # 0 at the losers


def _max_as_constant(x: np.ndarray, axis) -> np.ndarray:
    """The maximum along ``axis`` kept as a size-1 axis, 0 where it is infinite or the axis is empty: a
    shift that cancels out (x - m is exact wherever it matters: the largest terms)."""
    m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    return np.where(np.isfinite(m), m, 0)


@primitive
def logsumexp(x, *, axis=None, keepdims=False):
    """log Σ exp(x) = m + log Σ exp(x - m) with m the maximum, so no term overflows.

    Over an empty axis it is log 0 = -inf, as in PyTorch and JAX (np.max there is an error).
    """
    m = _max_as_constant(x, axis)
    with np.errstate(divide="ignore"):  # log 0: an empty axis, or every term -inf
        out = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


@logsumexp.defvjp
def logsumexp_vjp(ctx, g):
    """g · softmax(x), as exp(x - m) / Σ exp(x - m): exact where exp(x - ans) would lose ans's rounding."""
    x, = ctx.inputs
    shifted = exp(x - _max_as_constant(value(x), ctx.axis))
    return (_unreduce(g, x.shape, ctx.axis, ctx.keepdims) * shifted / shifted.sum(axis=ctx.axis, keepdims=True),)


@primitive(backward_reads_values=False)
def broadcast_to(x, *, shape):
    """x repeated along new leading axes and along its axes of length 1, to ``shape`` (a read-only view)."""
    return np.broadcast_to(x, shape)


@broadcast_to.defvjp
def broadcast_to_vjp(ctx, g):
    return (sum_to(g, shape=ctx.inputs[0].shape),)


@primitive(backward_reads_values=False)
def sum_to(x, *, shape):
    """x summed over the axes that broadcasting ``shape`` to x's shape would add or stretch."""
    return unbroadcast(x, tuple(shape), "sum_to")


@sum_to.defvjp
def sum_to_vjp(ctx, g):
    return (broadcast_to(g, shape=ctx.inputs[0].shape),)


@primitive(backward_reads_values=False)
def max_shift(x, *, axis):
    """The maximum of x along ``axis`` as a size-1 axis (0 where it is infinite or the axis is empty): the
    shift of softmax and log_softmax, an op with no gradient (their result does not depend on it), so
    that the captured step recomputes it at every step instead of keeping a recorded step's value."""
    return _max_as_constant(x, axis)


@max_shift.defvjp
def max_shift_vjp(ctx, g):
    return (None,)


def _shifted(x, axis: int, name: str):
    """x - m along ``axis``, m its maximum taken as a constant: exact for the largest terms, and the
    result of softmax and log_softmax does not depend on m, so neither does their gradient. ValueError
    (naming ``name``) for an axis that is not an int in [-x.ndim, x.ndim)."""
    ndim = np.ndim(x.data if isinstance(x, Tensor) else x)
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise ValueError(f"{name}: axis {axis!r} is not an axis of a {ndim}-d input")
    return x - max_shift(x, axis=axis)


def softmax(x, axis: int = -1):
    """exp(x) / Σ exp(x) along ``axis``, as exp(x - m) / Σ exp(x - m) with m the maximum: no exponential
    overflows, and no term of the size of m is rounded into the result (float64 inputs near 1e15
    sum to 1)."""
    e = exp(_shifted(x, axis, "softmax"))
    return e / sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis: int = -1):
    """x - log Σ exp(x) along ``axis``, as (x - m) - log Σ exp(x - m) with m the maximum: stable for any
    finite x, and as precise at 1e4 in float32 as near 0 (x - logsumexp(x) would round the log-sum to
    the ulp of m)."""
    shifted = _shifted(x, axis, "log_softmax")
    if shifted.shape[axis] == 0:  # nothing to normalise (and log Σ over no terms would warn of log 0)
        return shifted
    return shifted - log(sum(exp(shifted), axis=axis, keepdims=True))


# ------------------------------------------------------------------------ shapes and indexing
@primitive(backward_reads_values=False)
def reshape(x, *, shape):
    return np.reshape(x, shape)


@reshape.defvjp
def reshape_vjp(ctx, g):
    return (g.reshape(ctx.inputs[0].shape),)


@primitive(backward_reads_values=False)
def transpose(x, *, axes=None):
    return np.transpose(x, axes)


@transpose.defvjp
def transpose_vjp(ctx, g):
    inverse = None if ctx.axes is None else tuple(int(a) for a in np.argsort(np.asarray(ctx.axes) % g.ndim))
    return (transpose(g, axes=inverse),)


@primitive
def _getitem(x, *, index):
    return x[index]


@_getitem.defvjp
def getitem_vjp(ctx, g):
    return (scatter_add(g, index=ctx.index, shape=ctx.inputs[0].shape),)


@primitive
def scatter_add(x, *, index, shape):
    """Zeros of ``shape`` with x added at ``index`` (repeated integer indices add up): getitem's VJP."""
    out = np.zeros(shape, x.dtype)
    np.add.at(out, index, x)
    return out


@scatter_add.defvjp
def scatter_add_vjp(ctx, g):
    return (g[ctx.index],)


def getitem(x, index):
    """``x[index]``: slices, integers, ``None``, ellipsis, boolean masks and integer arrays."""
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return _getitem(x, index=index)


@primitive
def _concatenate(*xs, axis=0):
    return np.concatenate(xs, axis=axis)


@_concatenate.defvjp
def concatenate_vjp(ctx, g):
    axis = ctx.axis % g.ndim
    ends = np.cumsum([x.shape[axis] for x in ctx.inputs])
    lead = (slice(None),) * axis
    return tuple(g[lead + (slice(int(end - x.shape[axis]), int(end)),)] for x, end in zip(ctx.inputs, ends))


def concatenate(tensors, axis: int = 0):
    """Join tensors along an existing axis."""
    return _concatenate(*tensors, axis=axis)


@primitive
def _stack(*xs, axis=0):
    return np.stack(xs, axis=axis)


@_stack.defvjp
def stack_vjp(ctx, g):
    lead = (slice(None),) * (ctx.axis % g.ndim)
    return tuple(g[lead + (i,)] for i in range(len(ctx.inputs)))


def stack(tensors, axis: int = 0):
    """Join tensors along a new axis."""
    return _stack(*tensors, axis=axis)


# ------------------------------------------------------------------------ comparisons (no gradient)
def _compare(ufunc):
    """An op whose boolean result (a Tensor if an argument is one) has no gradient: it records no graph
    (a boolean never requires grad), but it is an op application, so the captured step recomputes it
    at every step instead of keeping the first step's mask as a constant."""
    def compare(x, y):
        return ufunc(x, y)
    compare.__name__ = ufunc.__name__
    compare.__doc__ = f"x {ufunc.__name__} y elementwise: a boolean array (a Tensor if an argument is one)."
    op = Op(compare, backward_reads_values=False)
    op.defvjp(lambda ctx, g: (None, None))
    return op


less, less_equal, greater, greater_equal, equal, not_equal = (
    _compare(u) for u in (np.less, np.less_equal, np.greater, np.greater_equal, np.equal, np.not_equal))
