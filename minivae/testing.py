"""Hypothesis strategies for testing code built on minivae (needs the ``test`` extra).

Shapes, well-conditioned float arrays, arrays restricted to an op's domain (positive, away from
zero, pairwise distinct, pairs that never meet) and Tensors ready for ``minivae.gradcheck``.
Every ``shape`` argument is a tuple or a strategy of tuples; every array strategy draws float64
values and casts them to ``dtype`` (float32 or float64). Example::

    from hypothesis import given
    import minivae as mv
    from minivae import testing as mvt

    @given(mvt.tensors(mvt.positive_arrays(mvt.shapes())))
    def test_log_gradient(x):
        assert mv.gradcheck(mv.log, x)
"""
from __future__ import annotations

import math

import numpy as np
from hypothesis import assume, strategies as st
from hypothesis.extra import numpy as hnp

from . import functions
from .checks import FLOAT_DTYPES
from .engine import Tensor, no_grad, ops
from .gradcheck import in_float64

__all__ = ["FLOAT_DTYPES", "float_dtypes", "shapes", "broadcastable_shapes", "matmul_shapes", "reduction_axes",
           "float_arrays", "positive_arrays", "nonzero_arrays", "distinct_arrays", "separated_pairs", "tensors", "in_float64",
           "programs", "Program", "Step", "Operation", "OPERATIONS", "Domain", "REAL", "SMALL", "POSITIVE", "NONZERO",
           "UNIT", "DISTINCT", "SEPARATED"]


def float_dtypes() -> st.SearchStrategy:
    """float32 or float64."""
    return st.sampled_from(FLOAT_DTYPES)


def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 4) -> st.SearchStrategy:
    """Array shapes: tuples of ``min_dims``..``max_dims`` sides, each ``min_side``..``max_side``."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(count: int = 2, min_dims: int = 0, max_dims: int = 3, min_side: int = 1,
                         max_side: int = 4) -> st.SearchStrategy:
    """Tuples of ``count`` shapes that broadcast together (pairs for count=2, triples for 3)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=count, min_dims=min_dims, max_dims=max_dims,
                                             min_side=min_side, max_side=max_side).map(lambda b: b.input_shapes)


def matmul_shapes(max_batch_dims: int = 2, max_side: int = 4) -> st.SearchStrategy:
    """Pairs of shapes ``(…, n, k)`` and ``(…, k, m)`` for ``@``, their batch dimensions broadcasting."""
    return hnp.mutually_broadcastable_shapes(signature="(n,k),(k,m)->(n,m)", max_dims=max_batch_dims,
                                             max_side=max_side).map(lambda b: b.input_shapes)


def reduction_axes(ndim: int) -> st.SearchStrategy:
    """An ``axis`` argument for an array of ``ndim`` dimensions: None, one axis, or a tuple of distinct axes.

    Axes may be negative.
    """
    one_axis = st.integers(-ndim, ndim - 1) if ndim else st.nothing()
    return st.one_of(st.none(), one_axis, hnp.valid_tuple_axes(ndim, min_size=1) if ndim else st.nothing())


def float_arrays(shape, dtype=np.float64, low: float = -3.0, high: float = 3.0) -> st.SearchStrategy:
    """Well-conditioned arrays: finite values in [low, high], no subnormals."""
    return _arrays(shape, dtype, st.floats(low, high, allow_subnormal=False))


def positive_arrays(shape, dtype=np.float64, low: float = 0.2, high: float = 3.0) -> st.SearchStrategy:
    """Arrays with values in [low, high], low > 0: the domain of log, sqrt and a power's base."""
    if low <= 0:
        raise ValueError(f"positive_arrays: low must be positive, got {low}")
    return float_arrays(shape, dtype, low, high)


def nonzero_arrays(shape, dtype=np.float64, margin: float = 0.2, high: float = 3.0) -> st.SearchStrategy:
    """Arrays with margin ≤ |value| ≤ high: safe divisors, and away from the kink of relu and abs at 0."""
    magnitude = st.floats(margin, high, allow_subnormal=False)
    return _arrays(shape, dtype, st.one_of(magnitude, magnitude.map(lambda v: -v)))


def distinct_arrays(shape, dtype=np.float64, margin: float = 0.2) -> st.SearchStrategy:
    """Arrays whose elements are pairwise at least ``margin`` apart, so that max has no ties.

    The elements are a shuffled grid of spacing 2·margin, each moved by at most 0.4·margin, so that
    the gaps (≥ 1.2·margin) survive rounding to float32.
    """
    dtype = _float_dtype(dtype)

    def build(shape):
        size = math.prod(shape)
        order = st.permutations(range(size)).map(lambda p: np.reshape(np.array(p, dtype=np.float64), shape))
        jitter = hnp.arrays(np.float64, shape, elements=st.floats(-0.4, 0.4))
        return st.tuples(order, jitter).map(
            lambda pair: ((2 * pair[0] - size + pair[1]) * margin).astype(dtype))
    return _as_strategy(shape).flatmap(build)


def separated_pairs(shape_pair, dtype=np.float64, margin: float = 0.2) -> st.SearchStrategy:
    """Pairs (x, y) of the two given broadcastable shapes with |x − y| ≥ margin everywhere once broadcast.

    Where x and y meet, maximum and minimum have a kink; these pairs stay clear of it. x lies on
    the even and y on the odd points of a grid of spacing 2·margin, each moved by at most 0.4·margin,
    so that the gaps (≥ 1.2·margin) survive rounding to float32.
    """
    dtype = _float_dtype(dtype)

    def build(shapes):
        def on_grid(shape, parity):
            steps = hnp.arrays(np.int64, shape, elements=st.integers(-3, 3))
            jitter = hnp.arrays(np.float64, shape, elements=st.floats(-0.2, 0.2))
            return st.tuples(steps, jitter).map(
                lambda pair: (2 * margin * (2 * pair[0] + parity + pair[1])).astype(dtype))
        return st.tuples(on_grid(shapes[0], 0), on_grid(shapes[1], 1))
    return _as_strategy(shape_pair).flatmap(build)


def tensors(arrays: st.SearchStrategy, requires_grad: bool = True, name: str | None = None) -> st.SearchStrategy:
    """Tensors wrapping the arrays drawn from ``arrays``, requiring grad by default (for gradcheck)."""
    return arrays.map(lambda a: Tensor(a, requires_grad=requires_grad, name=name))


def _arrays(shape, dtype, elements: st.SearchStrategy) -> st.SearchStrategy:
    """float64 arrays of ``shape`` with the given elements, cast to ``dtype``."""
    dtype = _float_dtype(dtype)
    return hnp.arrays(np.float64, _as_strategy(shape), elements=elements).map(lambda a: a.astype(dtype))


def _float_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"minivae.testing: dtype must be float32 or float64, got {dtype}")
    return dtype


def _as_strategy(value) -> st.SearchStrategy:
    """``value`` itself if it is a strategy, else a strategy that always gives ``value``."""
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


# ------------------------------------------------------------------------ random programs
class Domain:
    """Where an op's argument must lie: a test on a value, and a strategy of fresh values inside.

    ``contains(array, first)`` and ``arrays(shape, dtype, first)`` both receive the op's first
    argument (an ndarray), so that a domain may be relative to it (``SEPARATED``); most ignore it.
    Bounds keep every value a program computes of moderate size, so that central differences
    stay accurate through a chain of ops.
    """

    def __init__(self, name: str, contains, arrays):
        self.name, self.contains, self.arrays = name, contains, arrays

    def __repr__(self) -> str:
        return f"<domain {self.name}>"


def _within(low: float, high: float, magnitude: bool = False):
    def contains(a, first=None):
        values = np.abs(a) if magnitude else a
        return bool(np.all((values >= low) & (values <= high)))
    return contains


def _distinct(a, first=None) -> bool:
    return bool(np.all(np.abs(a) <= 10) and (a.size < 2 or np.min(np.diff(np.sort(a, axis=None))) >= 0.2))


def _separated(a, first) -> bool:
    try:
        gap = np.abs(np.asarray(a, np.float64) - first)
    except ValueError:
        return False
    return bool(np.all(np.abs(a) <= 10) and np.all(gap >= 0.2))


REAL = Domain("real", _within(-10, 10), lambda shape, dtype, first: float_arrays(shape, dtype, -2.0, 2.0))
"""Any moderate value: fresh in [-2, 2], accepted in [-10, 10]."""
SMALL = Domain("small", _within(-3, 3), lambda shape, dtype, first: float_arrays(shape, dtype, -2.0, 2.0))
"""|x| ≤ 3: the argument of exp, an exponent, a log-variance."""
POSITIVE = Domain("positive", _within(0.2, 10), lambda shape, dtype, first: positive_arrays(shape, dtype, 0.25, 3.0))
"""x ≥ 0.2: the domain of log and sqrt, the base of a power."""
NONZERO = Domain("nonzero", _within(0.2, 10, magnitude=True),
                 lambda shape, dtype, first: nonzero_arrays(shape, dtype, margin=0.25, high=2.5))
"""|x| ≥ 0.2: a divisor, and clear of the kink of relu and abs."""
UNIT = Domain("unit", _within(0.05, 0.95), lambda shape, dtype, first: float_arrays(shape, dtype, 0.1, 0.9))
"""Probabilities away from 0 and 1 (fresh in [0.1, 0.9], accepted in [0.05, 0.95]): targets of a Bernoulli
loss, which stay probabilities when a check perturbs them."""
DISTINCT = Domain("distinct", _distinct, lambda shape, dtype, first: distinct_arrays(shape, dtype, margin=0.25))
"""Elements pairwise at least 0.2 apart: max without ties."""
SEPARATED = Domain("separated", _separated, lambda shape, dtype, first: nonzero_arrays(
    shape, dtype, margin=0.25, high=1.5).map(lambda d: (d + first).astype(dtype)))
"""At least 0.2 from the first argument everywhere: maximum and minimum clear of their kink."""


class Operation:
    """One entry of the pool that ``programs`` draws from: a function of Tensors and what it accepts.

    - ``name``: how the printed program calls it (``"mv.exp"``; a user's op by the name it has
      where the program is run).
    - ``fn(*tensors, **params) -> Tensor``.
    - ``domains``: one ``Domain`` per tensor argument (``arity`` of them).
    - ``min_dims``, ``max_dims``: the dimensions the first argument may have.
    - ``shapes(first_shape)``: a strategy of the tuple of the other arguments' shapes (default:
      nothing for one argument, else the first shape or one broadcasting with it).
    - ``params(*arrays)``: a strategy of the static keyword parameters given the argument values
      (default: none).
    - ``template``: how to print a call, a ``str.format`` pattern over the argument names (``{0}``,
      ``{1}``) and the parameters as Python literals (``{axis}``); default ``name(args, key=value)``.
    """

    def __init__(self, name: str, fn, arity: int = 1, domains=(REAL,), *, min_dims: int = 0,
                 max_dims: int | None = None, shapes=None, params=None, template: str | None = None):
        domains = tuple(domains)
        if len(domains) == 1:
            domains *= arity
        if len(domains) != arity:
            raise ValueError(f"Operation {name}: {len(domains)} domains for {arity} arguments")
        self.name, self.fn, self.arity, self.domains = name, fn, arity, domains
        self.min_dims, self.max_dims = min_dims, max_dims
        self.shapes = shapes or (_no_shapes if arity == 1 else _broadcasting_partners(arity - 1))
        self.params = params or (lambda *arrays: st.just({}))
        self.template = template

    def accepts(self, shape: tuple) -> bool:
        return self.min_dims <= len(shape) <= (self.max_dims if self.max_dims is not None else len(shape))

    def call_source(self, args: list, params: dict) -> str:
        """The Python expression of one call, e.g. ``mv.sum(t0, axis=1, keepdims=False)``."""
        literals = {key: _literal(value) for key, value in params.items()}
        if self.template is not None:
            return self.template.format(*args, **literals)
        return f"{self.name}({', '.join([*args, *(f'{k}={v}' for k, v in literals.items())])})"

    def __repr__(self) -> str:
        return f"<operation {self.name}>"


def _no_shapes(first):
    return st.just(())


def _broadcasting_partners(count: int):
    def shapes(first):
        partner = st.one_of(st.just(first), hnp.broadcastable_shapes(first, min_dims=0, max_dims=max(len(first), 3),
                                                                    min_side=1, max_side=3))
        return st.tuples(*[partner] * count)
    return shapes


def _literal(value) -> str:
    """``value`` as Python source that rebuilds it (``np.array([...])`` for arrays)."""
    if isinstance(value, np.ndarray):
        dtype = "" if value.dtype in (np.float64, np.int64) else f", dtype=np.{value.dtype}"
        return f"np.array({value.tolist()!r}{dtype})"
    if isinstance(value, tuple):
        items = [_literal(v) for v in value]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if isinstance(value, slice):
        return f"slice({value.start!r}, {value.stop!r}, {value.step!r})"
    if value is Ellipsis:
        return "..."
    if isinstance(value, np.generic):
        return repr(value.item())
    return repr(value)


class Step:
    """One call of a program: ``out = op(*args, **params)``, args naming inputs or earlier steps."""

    def __init__(self, out: str, op: Operation, args: tuple, params: dict):
        self.out, self.op, self.args, self.params = out, op, tuple(args), params

    def __repr__(self) -> str:
        return f"{self.out} = {self.op.call_source(list(self.args), self.params)}"


class Program:
    """A straight-line differentiable program drawn by ``programs``: inputs, steps, and the output.

    Call it with one Tensor (or array) per input; its ``repr`` is runnable Python that defines
    ``program`` and ``inputs``, so that ``mv.gradcheck(program, *inputs)`` reproduces a check.
    """

    def __init__(self, inputs: list, steps: list):
        self.inputs, self.steps = inputs, steps
        self.input_names = [f"x{i}" for i in range(len(inputs))]
        self.output = steps[-1].out

    def __call__(self, *inputs):
        return self.run(inputs)

    def run(self, inputs, call=None):
        """Evaluate on ``inputs``; ``call(step, args)`` replaces ``step.op.fn(*args, **step.params)`` if given
        (to run the same program on another library)."""
        if len(inputs) != len(self.inputs):
            raise TypeError(f"program: takes {len(self.inputs)} inputs, got {len(inputs)}")
        values = dict(zip(self.input_names, inputs))
        for step in self.steps:
            args = [values[name] for name in step.args]
            values[step.out] = step.op.fn(*args, **step.params) if call is None else call(step, args)
        return values[self.output]

    def __len__(self) -> int:
        return len(self.steps)

    def source(self) -> str:
        lines = ["import numpy as np", "import minivae as mv", "", f"def program({', '.join(self.input_names)}):"]
        lines += [f"    {step!r}" for step in self.steps]
        lines += [f"    return {self.output}", "", "inputs = ["]
        lines += [f"    {_literal(a)}," for a in self.inputs]
        lines += ["]", "# mv.gradcheck(program, *inputs)"]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return "\n" + self.source() + "\n"


MAX_VALUE_SIZE = 64
"""Values of more elements than this are not fed into further ops (they stay cheap to check)."""


def programs(ops=None, max_ops: int = 4, dtype=np.float64, max_dims: int = 3, max_side: int = 3) -> st.SearchStrategy:
    """Random straight-line programs of 1..``max_ops`` calls of ``ops`` (default ``OPERATIONS``).

    Each call takes a value computed earlier (the most recent first, so that programs chain) or a
    fresh input, and its other arguments are earlier values of the right shape (a tensor used
    twice) or fresh inputs; every argument lies inside its op's domain, checked on the actual value,
    and fresh inputs are drawn inside it. The program's output is its last value; the calls and
    inputs it does not depend on are left out. Programs whose values overflow are rejected. Hypothesis shrinks a failing program to fewer calls and simpler
    inputs, and prints it as runnable Python (see ``Program``). Example::

        @given(mvt.programs())
        def test_gradients(program):
            assert mv.gradcheck(program, *program.inputs)

    Add an op of your own with ``programs(mvt.OPERATIONS + (Operation("my_op", my_op, ...),))``.
    """
    ops = tuple(OPERATIONS if ops is None else ops)
    if not ops or not all(isinstance(op, Operation) for op in ops):
        raise ValueError("programs: ops must be a non-empty sequence of Operation")
    if max_ops < 1:
        raise ValueError(f"programs: max_ops must be at least 1, got {max_ops}")
    dtype = _float_dtype(dtype)
    return _programs(ops, max_ops, dtype, max_dims, max_side)


@st.composite
def _programs(draw, ops, max_ops, dtype, max_dims, max_side):
    inputs, steps, values = [], [], {}  # values: name -> ndarray, in order of creation

    def fresh(domain, shape, first):
        array = np.asarray(draw(domain.arrays(shape, dtype, first)), dtype)  # an ndarray even of shape ()
        inputs.append(array)
        values[f"x{len(inputs) - 1}"] = array
        return f"x{len(inputs) - 1}"

    def pick(domain, fits, first, fresh_shape, chain=False):
        """An earlier value that fits and lies in ``domain``, or a fresh input; with ``chain``, the most
        recent such value half of the time, so that calls feed on each other."""
        candidates = [name for name, a in reversed(values.items())
                      if a.size <= MAX_VALUE_SIZE and fits(a.shape) and domain.contains(a, first)]
        any_choice = st.integers(0, len(candidates))
        choice = draw(st.one_of(st.just(0), any_choice) if chain and candidates else any_choice)
        return candidates[choice] if choice < len(candidates) else fresh(domain, draw(fresh_shape), first)

    # The ops are drawn first: Hypothesis draws the later choices of a long example close to their
    # simplest value far more often than the first ones, which would favour the pool's first op.
    count = draw(st.integers(1, max_ops))
    chosen = draw(st.lists(st.sampled_from(ops), min_size=count, max_size=count))
    with no_grad():
        for k, op in enumerate(chosen):
            shape_bounds = dict(min_dims=op.min_dims, max_dims=max(op.min_dims, op.max_dims if op.max_dims is not None
                                                                   else max_dims), max_side=max_side)
            first = pick(op.domains[0], op.accepts, None, shapes(**shape_bounds), chain=True)
            first_array = values[first]
            names = [first]
            for domain, shape in zip(op.domains[1:], draw(op.shapes(first_array.shape))):
                names.append(pick(domain, lambda s, shape=shape: s == shape, first_array, st.just(shape)))
            arrays = [values[name] for name in names]
            params = draw(op.params(*arrays))
            out = op.fn(*[Tensor(a) for a in arrays], **params).data
            assume(out.size > 0 and np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1e6)
            steps.append(Step(f"t{k}", op, names, params))
            values[f"t{k}"] = out
    return _live(inputs, steps)


def _live(inputs: list, steps: list) -> Program:
    """The program without the steps and inputs its output does not depend on, renumbered in order."""
    needed = {steps[-1].out}
    for step in reversed(steps):
        if step.out in needed:
            needed.update(step.args)
    renamed = {}
    kept_inputs = []
    for i, array in enumerate(inputs):
        if f"x{i}" in needed:
            renamed[f"x{i}"] = f"x{len(kept_inputs)}"
            kept_inputs.append(array)
    kept_steps = []
    for step in steps:
        if step.out in needed:
            renamed[step.out] = f"t{len(kept_steps)}"
            kept_steps.append(Step(renamed[step.out], step.op, [renamed[name] for name in step.args], step.params))
    return Program(kept_inputs, kept_steps)


# ------------------------------------------------------------------------ the engine's ops as a pool
def _axis_params(*arrays):
    return st.fixed_dictionaries({"axis": reduction_axes(arrays[0].ndim), "keepdims": st.booleans()})


def _reshape_params(x):
    return st.sampled_from(_factorizations(x.size)).map(lambda shape: {"shape": shape})


def _factorizations(n: int, max_dims: int = 3) -> list:
    """Every shape of at most ``max_dims`` sides whose product is n; a (n,) and a -1 form first."""
    shapes = [(n,), (-1,)]
    def extend(prefix, rest):
        if len(prefix) < max_dims:
            for side in range(1, rest + 1):
                if rest % side == 0:
                    shape = prefix + (side,)
                    if side == rest and shape not in shapes:
                        shapes.append(shape)
                    extend(shape, rest // side)
    extend((), n)
    if n == 1:
        shapes.append(())
    return shapes


def _transpose_params(x):
    axes = st.permutations(range(x.ndim)).flatmap(
        lambda p: st.tuples(*[st.sampled_from([a, a - x.ndim]) for a in p]) if p else st.just(()))
    return st.fixed_dictionaries({"axes": st.one_of(st.none(), axes)})


def _index_params(x):
    n = x.shape[0]
    repeated = hnp.arrays(np.int64, st.integers(1, 4), elements=st.integers(-n, n - 1))
    kinds = [repeated,                                                       # x[[1, 1, -3]]: repeats add up
             st.integers(-n, n - 1),                                         # x[i]
             st.builds(slice, st.none() | st.integers(-n, n - 1), st.none() | st.integers(-n, n),
                       st.sampled_from([None, 1, 2, -1])).filter(lambda s: len(range(n)[s]) > 0),
             hnp.arrays(np.bool_, x.shape).map(lambda m: np.where(np.arange(m.size).reshape(m.shape) == 0, True, m)),
             st.just((Ellipsis, None))]
    if x.ndim >= 2:
        m = x.shape[1]
        kinds.append(hnp.arrays(np.int64, st.integers(1, 3), elements=st.integers(-m, m - 1)).map(
            lambda i: (slice(None), i)))                                     # x[:, [0, 0]]
    return st.one_of(kinds).map(lambda index: {"index": index})


def _concatenate_shapes(first):
    axis = st.integers(0, len(first) - 1)
    return st.tuples(axis, st.integers(1, 3)).map(lambda p: (first[:p[0]] + (p[1],) + first[p[0] + 1:],))


def _concatenate_params(x, y):
    axes = [a for a in range(x.ndim) if x.shape[:a] + x.shape[a + 1:] == y.shape[:a] + y.shape[a + 1:]]
    return st.sampled_from(axes + [a - x.ndim for a in axes]).map(lambda a: {"axis": a})


def _matmul_shapes(first):
    k = first[-1]
    return st.tuples(st.integers(1, 3), st.booleans()).map(lambda p: ((*first[:-2], k, p[0]) if p[1] else (k, p[0]),))


def _linear_relu(x, weight, bias, *, relu):
    return (functions.linear_relu if relu else functions.linear)(x, weight, bias)


def _dense_params(x, w, b):
    pre = x @ w.T + b
    return st.fixed_dictionaries({"relu": st.sampled_from([False, True] if np.all(np.abs(pre) >= 0.2) else [False])})


def _axis_only(x):
    return st.integers(-max(x.ndim, 1), max(x.ndim, 1) - 1).map(lambda a: {"axis": a})


def _where_params(x, y):
    shape = np.broadcast_shapes(x.shape, y.shape)
    return hnp.arrays(np.bool_, shape).map(lambda c: {"condition": c})


def _suffix_or_same(first):
    return st.integers(0, len(first) - 1).map(lambda k: (first[k:],))


def _samples_or_same(first):
    return st.one_of(st.just((first, first)), st.integers(1, 2).map(lambda s: (first, (s, *first))))


def _same(count):
    return lambda first: st.just((first,) * count)


def _unary(name, fn, domain=REAL):
    return Operation(f"mv.{name}", fn, 1, (domain,))


def _binary(name, fn, domains=(REAL, REAL), **kwargs):
    return Operation(f"mv.{name}", fn, 2, domains, **kwargs)


def _reduction(name, fn, domain=REAL):
    return Operation(f"mv.{name}", fn, 1, (domain,), params=_axis_params)


OPERATIONS = (
    _unary("neg", ops.neg), _unary("exp", ops.exp, SMALL), _unary("log", ops.log, POSITIVE),
    _unary("log1p", ops.log1p, POSITIVE), _unary("sqrt", ops.sqrt, POSITIVE), _unary("abs", ops.abs, NONZERO),
    _unary("relu", ops.relu, NONZERO), _unary("tanh", ops.tanh), _unary("sigmoid", ops.sigmoid),
    _unary("softplus", ops.softplus), _unary("log_sigmoid", ops.log_sigmoid),
    _binary("add", ops.add), _binary("sub", ops.sub), _binary("mul", ops.mul),
    _binary("div", ops.div, (REAL, NONZERO)), _binary("pow", ops.pow, (POSITIVE, SMALL)),
    _binary("maximum", ops.maximum, (REAL, SEPARATED), shapes=_same(1)),
    _binary("minimum", ops.minimum, (REAL, SEPARATED), shapes=_same(1)),
    _binary("where", lambda x, y, *, condition: ops.where(condition, x, y), params=_where_params,
            template="mv.where({condition}, {0}, {1})"),
    _reduction("sum", ops.sum), _reduction("mean", ops.mean), _reduction("max", ops.max, DISTINCT),
    _reduction("logsumexp", ops.logsumexp),
    Operation("mv.reshape", ops.reshape, params=_reshape_params),
    Operation("mv.transpose", ops.transpose, params=_transpose_params),
    Operation("mv.getitem", ops.getitem, min_dims=1, params=_index_params, template="{0}[{index}]"),
    Operation("mv.concatenate", lambda x, y, *, axis: ops.concatenate([x, y], axis=axis), 2, min_dims=1,
              shapes=_concatenate_shapes, params=_concatenate_params, template="mv.concatenate([{0}, {1}], axis={axis})"),
    Operation("mv.stack", lambda x, y, *, axis: ops.stack([x, y], axis=axis), 2, shapes=_same(1),
              params=lambda x, y: st.integers(-x.ndim - 1, x.ndim).map(lambda a: {"axis": a}),
              template="mv.stack([{0}, {1}], axis={axis})"),
    _binary("matmul", ops.matmul, min_dims=2, shapes=_matmul_shapes),
    Operation("mv.linear", functions.linear, 3, min_dims=1,
              shapes=lambda first: st.integers(1, 3).map(lambda out: ((out, first[-1]), (out,)))),
    _binary("binary_cross_entropy_with_logits", functions.binary_cross_entropy_with_logits, (REAL, UNIT),
            params=lambda z, t: st.sampled_from(["mean", "sum", "none"]).map(lambda r: {"reduction": r})),
    Operation("mv.softmax", ops.softmax, min_dims=1, params=_axis_only),
    Operation("mv.log_softmax", ops.log_softmax, min_dims=1, params=_axis_only),
    # the model's functions (fused beneath while the numba backend is on)
    Operation("mv.linear_relu", _linear_relu, 3, min_dims=1,
              shapes=lambda first: st.integers(1, 3).map(lambda out: ((out, first[-1]), (out,))), params=_dense_params,
              template="(mv.linear_relu if {relu} else mv.linear)({0}, {1}, {2})"),
    Operation("mv.bernoulli_log_prob", functions.bernoulli_log_prob, 2, (REAL, UNIT), min_dims=1,
              shapes=_suffix_or_same),
    Operation("mv.gaussian_rsample", functions.gaussian_rsample, 3, (REAL, SMALL, REAL), min_dims=1,
              shapes=_samples_or_same),
    Operation("mv.kl_to_standard_normal", functions.kl_to_standard_normal, 2, (REAL, SMALL), min_dims=1,
              shapes=_same(1)),
    Operation("mv.kl_diagonal_gaussians", functions.kl_diagonal_gaussians, 4, (REAL, SMALL, REAL, SMALL), min_dims=1,
              shapes=_same(3)),
    Operation("mv.gaussian_log_prob", functions.gaussian_log_prob, 3, (REAL, REAL, SMALL), min_dims=1,
              shapes=_same(2)),
)
"""The default pool of ``programs``: every public op of the engine, the fused ops and a Gaussian log-density."""
