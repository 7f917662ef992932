"""``programs``: random straight-line programs drawn from a pool, for property tests of gradients."""
from __future__ import annotations

import numpy as np
from hypothesis import assume, strategies as st

from ..engine import Tensor, no_grad
from .language import PoolEntry, Program, Step
from .pool import POOL
from .strategies import _float_dtype, shapes

MAX_VALUE_SIZE = 64
"""Values of more elements than this are not fed into further ops (they stay cheap to check)."""


def programs(pool=None, max_ops: int = 4, dtype=np.float64, max_dims: int = 3, max_side: int = 3) -> st.SearchStrategy:
    """Random straight-line programs of 1..``max_ops`` calls of the entries of ``pool`` (default ``POOL``).

    Each call takes a value computed earlier (the most recent first, so that programs chain) or a
    fresh input, and its other arguments are earlier values of the right shape (a tensor used
    twice) or fresh inputs; every argument lies inside its op's domain, checked on the actual value,
    and fresh inputs are drawn inside it. The program's output is its last value; the calls and
    inputs it does not depend on are left out. Programs whose values overflow are rejected.
    Hypothesis shrinks a failing program to fewer calls and simpler inputs, and prints it as
    runnable Python (see ``Program``). Example::

        @given(mvt.programs())
        def test_gradients(program):
            assert mv.gradcheck(program, *program.inputs)

    Add an op of your own with ``programs(mvt.POOL + (mvt.PoolEntry("my_op", my_op, ...),))``.
    """
    pool = tuple(POOL if pool is None else pool)
    if not pool or not all(isinstance(entry, PoolEntry) for entry in pool):
        raise ValueError("programs: pool must be a non-empty sequence of PoolEntry")
    if max_ops < 1:
        raise ValueError(f"programs: max_ops must be at least 1, got {max_ops}")
    dtype = _float_dtype(dtype)
    return _programs(pool, max_ops, dtype, max_dims, max_side)


@st.composite
def _programs(draw, pool, max_ops, dtype, max_dims, max_side):
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

    # The entries are drawn first: Hypothesis draws the later choices of a long example close to their
    # simplest value far more often than the first ones, which would favour the pool's first entry.
    count = draw(st.integers(1, max_ops))
    chosen = draw(st.lists(st.sampled_from(pool), min_size=count, max_size=count))
    with no_grad():
        for k, entry in enumerate(chosen):
            top = entry.max_dims if entry.max_dims is not None else max_dims
            shape_bounds = dict(min_dims=entry.min_dims, max_dims=max(entry.min_dims, top), max_side=max_side)
            first = pick(entry.domains[0], entry.accepts, None, shapes(**shape_bounds), chain=True)
            first_array = values[first]
            names = [first]
            for domain, shape in zip(entry.domains[1:], draw(entry.shapes(first_array.shape))):
                names.append(pick(domain, lambda s, shape=shape: s == shape, first_array, st.just(shape)))
            arrays = [values[name] for name in names]
            params = draw(entry.params(*arrays))
            out = entry.fn(*[Tensor(a) for a in arrays], **params).data
            assume(out.size > 0 and np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1e6)
            steps.append(Step(f"t{k}", entry, names, params))
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
            kept_steps.append(Step(renamed[step.out], step.entry, [renamed[name] for name in step.args], step.params))
    return Program(kept_inputs, kept_steps)
