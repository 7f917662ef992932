"""The language of the random programs: domains, pool entries, steps and programs.

A ``Program`` is a list of ``Step``s, each calling one ``PoolEntry`` (a function of Tensors with a
``Domain`` for each argument) on the program's inputs or on earlier steps' values; its ``repr`` is
runnable Python.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .strategies import distinct_arrays, float_arrays, nonzero_arrays, positive_arrays


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


class PoolEntry:
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
            raise ValueError(f"PoolEntry {name}: {len(domains)} domains for {arity} arguments")
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
        return f"<pool entry {self.name}>"


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
    """One call of a program: ``out = entry(*args, **params)``, args naming inputs or earlier steps."""

    def __init__(self, out: str, entry: PoolEntry, args: tuple, params: dict):
        self.out, self.entry, self.args, self.params = out, entry, tuple(args), params

    def __repr__(self) -> str:
        return f"{self.out} = {self.entry.call_source(list(self.args), self.params)}"


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
        """Evaluate on ``inputs``; ``call(step, args)`` replaces ``step.entry.fn(*args, **step.params)`` if given
        (to run the same program on another library)."""
        if len(inputs) != len(self.inputs):
            raise TypeError(f"program: takes {len(self.inputs)} inputs, got {len(inputs)}")
        values = dict(zip(self.input_names, inputs))
        for step in self.steps:
            args = [values[name] for name in step.args]
            values[step.out] = step.entry.fn(*args, **step.params) if call is None else call(step, args)
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
