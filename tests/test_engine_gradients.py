"""Every op's gradient against central differences, in float64, over random shapes; and every op
keeps float32 and float64 through its forward and its gradient.

Each case maps a dtype to a strategy of ``(fn, inputs)``; the inputs are drawn in that dtype from
the domain where the op is smooth (``minivae.testing``).
"""
from functools import partial

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import minivae as mv
from minivae import testing as mvt


def assert_dtype_preserved(fn, inputs, dtype):
    """fn's output and the gradient of every input it reaches have ``dtype``."""
    out = fn(*inputs)
    assert out.dtype == dtype
    out.backward(np.ones(out.shape, dtype))
    for x in inputs:
        if isinstance(x, mv.Tensor) and x.grad is not None:
            assert x.grad.dtype == dtype and x.grad.shape == x.shape


def draw_tensors(draw, shapes, dtype, arrays=mvt.float_arrays):
    """One tensor requiring grad per shape (a tuple or a strategy), drawn from ``arrays``."""
    return [draw(mvt.tensors(arrays(shape, dtype))) for shape in shapes]


def unary(fn, arrays=mvt.float_arrays):
    """Case: fn of one tensor drawn from ``arrays``."""
    return lambda dtype: mvt.tensors(arrays(mvt.shapes(), dtype), name="x").map(lambda x: (fn, [x]))


def binary(fn, x_arrays=mvt.float_arrays, y_arrays=mvt.float_arrays):
    """Case: fn of two tensors whose shapes broadcast together."""
    @st.composite
    def case(draw, dtype):
        x_shape, y_shape = draw(mvt.broadcastable_shapes(2))
        return fn, draw_tensors(draw, [x_shape], dtype, x_arrays) + draw_tensors(draw, [y_shape], dtype, y_arrays)
    return case


@st.composite
def matmul_case(draw, dtype, max_batch_dims):
    return mv.matmul, draw_tensors(draw, draw(mvt.matmul_shapes(max_batch_dims)), dtype)


@st.composite
def linear_case(draw, dtype):
    batch, n_in, n_out = draw(st.tuples(*[st.integers(1, 4)] * 3))
    return mv.linear, draw_tensors(draw, [(batch, n_in), (n_out, n_in), (n_out,)], dtype)


@st.composite
def where_case(draw, dtype):
    condition_shape, *shapes = draw(mvt.broadcastable_shapes(3))
    return mv.where, [draw(hnp.arrays(bool, condition_shape))] + draw_tensors(draw, shapes, dtype)


@st.composite
def separated_case(draw, dtype, fn):
    pair = draw(mvt.separated_pairs(mvt.broadcastable_shapes(2), dtype))
    return fn, [mv.Tensor(a, requires_grad=True) for a in pair]


def reduction(op, arrays=mvt.float_arrays):
    """Case: op over a drawn axis (None, one, several, negative) with or without keepdims."""
    @st.composite
    def case(draw, dtype):
        [x] = draw_tensors(draw, [mvt.shapes(min_dims=1)], dtype, arrays)
        return partial(op, axis=draw(mvt.reduction_axes(x.ndim)), keepdims=draw(st.booleans())), [x]
    return case


@st.composite
def reshape_case(draw, dtype):
    [x] = draw_tensors(draw, [mvt.shapes()], dtype)
    target = draw(st.sampled_from([(x.size,), (-1,), x.shape[::-1], (1, *x.shape), (x.size, 1)]))
    return partial(mv.reshape, shape=target), [x]


@st.composite
def transpose_case(draw, dtype):
    [x] = draw_tensors(draw, [mvt.shapes()], dtype)
    axes = tuple(a - draw(st.sampled_from([0, x.ndim])) for a in draw(st.permutations(range(x.ndim))))
    return partial(mv.transpose, axes=axes), [x]


@st.composite
def basic_index_case(draw, dtype):
    [x] = draw_tensors(draw, [mvt.shapes(min_dims=1)], dtype)
    return partial(mv.getitem, index=draw(hnp.basic_indices(x.shape, allow_newaxis=True))), [x]


@st.composite
def integer_index_case(draw, dtype):
    [x] = draw_tensors(draw, [mvt.shapes(min_dims=1)], dtype)
    result_shapes = mvt.shapes(min_dims=1, max_dims=2, max_side=6)
    return partial(mv.getitem, index=draw(hnp.integer_array_indices(x.shape, result_shape=result_shapes))), [x]


def concatenate_all(*tensors, axis):
    return mv.concatenate(tensors, axis=axis)


def stack_all(*tensors, axis):
    return mv.stack(tensors, axis=axis)


@st.composite
def concatenate_case(draw, dtype):
    shape = draw(mvt.shapes(min_dims=1))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    sides = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    shapes = [shape[:axis % len(shape)] + (side,) + shape[axis % len(shape) + 1:] for side in sides]
    return partial(concatenate_all, axis=axis), draw_tensors(draw, shapes, dtype)


@st.composite
def stack_case(draw, dtype):
    shape = draw(mvt.shapes())
    axis = draw(st.integers(-len(shape) - 1, len(shape)))
    return partial(stack_all, axis=axis), draw_tensors(draw, [shape] * draw(st.integers(1, 3)), dtype)


@st.composite
def bce_case(draw, dtype):
    logits_shape, targets_shape = draw(mvt.broadcastable_shapes(2))
    reduction_name = draw(st.sampled_from(["none", "sum", "mean"]))
    logits = draw(mvt.tensors(mvt.float_arrays(logits_shape, dtype), name="logits"))
    targets = draw(mvt.tensors(mvt.float_arrays(targets_shape, dtype, 0.0, 1.0), name="targets"))
    return partial(mv.binary_cross_entropy_with_logits, reduction=reduction_name), [logits, targets]


CASES = {
    "add": binary(mv.add),
    "sub": binary(mv.sub),
    "mul": binary(mv.mul),
    "div": binary(mv.div, y_arrays=mvt.nonzero_arrays),
    "pow": binary(mv.pow, x_arrays=mvt.positive_arrays,
                  y_arrays=lambda shape, dtype: mvt.float_arrays(shape, dtype, -2.0, 2.0)),
    "x + 2.0": unary(lambda x: x + 2.0),
    "2.0 - x": unary(lambda x: 2.0 - x),
    "x * np.float64(2.0)": unary(lambda x: x * np.float64(2.0)),
    "np.float64(3.0) / x": unary(lambda x: np.float64(3.0) / x, mvt.nonzero_arrays),
    "x / 2": unary(lambda x: x / 2),
    "x ** 2": unary(lambda x: x ** 2),
    "x ** np.float64(3.0)": unary(lambda x: x ** np.float64(3.0)),
    "x ** -1.5": unary(lambda x: x ** -1.5, mvt.positive_arrays),
    "2.0 ** x": unary(lambda x: 2.0 ** x),
    "neg": unary(mv.neg),
    "matmul 2-D": lambda dtype: matmul_case(dtype, max_batch_dims=0),
    "matmul batched": lambda dtype: matmul_case(dtype, max_batch_dims=2),
    "linear": linear_case,
    "exp": unary(mv.exp),
    "log": unary(mv.log, mvt.positive_arrays),
    "log1p": unary(mv.log1p, lambda shape, dtype: mvt.float_arrays(shape, dtype, -0.8, 3.0)),
    "sqrt": unary(mv.sqrt, mvt.positive_arrays),
    "abs": unary(mv.abs, mvt.nonzero_arrays),
    "maximum": lambda dtype: separated_case(dtype, mv.maximum),
    "minimum": lambda dtype: separated_case(dtype, mv.minimum),
    "where": where_case,
    "relu": unary(mv.relu, mvt.nonzero_arrays),
    "tanh": unary(mv.tanh),
    "sigmoid": unary(mv.sigmoid),
    "softplus": unary(mv.softplus),
    "log_sigmoid": unary(mv.log_sigmoid),
    "sum": reduction(mv.sum),
    "mean": reduction(mv.mean),
    "max": reduction(mv.max, mvt.distinct_arrays),
    "logsumexp": reduction(mv.logsumexp),
    "reshape": reshape_case,
    "transpose": transpose_case,
    ".T": unary(lambda x: x.T),
    "basic indexing": basic_index_case,
    "integer-array indexing": integer_index_case,
    "concatenate": concatenate_case,
    "stack": stack_case,
    "binary_cross_entropy_with_logits": bce_case,
}


@pytest.mark.parametrize("dtype", mvt.FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("name", CASES)
@given(data=st.data())
def test_op_gradient_matches_central_differences_and_keeps_dtype(name, data, dtype):
    fn, inputs = data.draw(CASES[name](dtype))
    assert_dtype_preserved(fn, inputs, dtype)
    assert mv.gradcheck(fn, *inputs)


def test_repeated_integer_indices_add_their_gradients():
    x = mv.Tensor(np.arange(4.0), requires_grad=True)
    x[[0, 0, 3, 0]].sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 0.0, 1.0])
    assert mv.gradcheck(lambda t: t[np.array([[2, 2], [1, 2]])], x)


def test_boolean_mask_gradient_reaches_selected_elements_only():
    x = mv.Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    mask = np.array([[True, False, True], [False, False, True]])
    x[mask].sum().backward()
    np.testing.assert_array_equal(x.grad, mask.astype(float))


def test_where_takes_any_truthy_condition():
    condition = np.array([1.0, 0.0, 2.0])
    x, y = mv.Tensor(np.ones(3), requires_grad=True), mv.Tensor(np.ones(3), requires_grad=True)
    mv.where(condition, x, y).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(y.grad, [0.0, 1.0, 0.0])


# ---------------------------------------------------------------- random programs of several ops
UNARY_STEPS = {
    "tanh": mv.tanh,
    "sigmoid": mv.sigmoid,
    "softplus": mv.softplus,
    "log_sigmoid": mv.log_sigmoid,
    "neg": mv.neg,
    "x * tanh(x)": lambda t: t * t.tanh(),
    "exp(tanh(x))": lambda t: t.tanh().exp(),
    "sqrt(softplus(x) + 0.5)": lambda t: (t.softplus() + 0.5).sqrt(),
    "log1p(x ** 2)": lambda t: (t ** 2).log1p(),
    "0.5 * x - 1": lambda t: 0.5 * t - 1,
}
BINARY_STEPS = {
    "x + y": lambda t, y: t + y,
    "x - y": lambda t, y: t - y,
    "x * y": lambda t, y: t * y,
    "x / (1 + y ** 2)": lambda t, y: t / (1 + y * y),
    "softplus(x) ** sigmoid(y)": lambda t, y: t.softplus() ** y.sigmoid(),
    "logsumexp(stack([x, y]))": lambda t, y: mv.logsumexp(mv.stack([t + 0 * y, 0 * t + y]), axis=0),
}
FINAL_STEPS = {
    "none": lambda t: t,
    "sum": lambda t: t.sum(),
    "mean over axis 0": lambda t: t.mean(axis=0) if t.ndim else t,
    "logsumexp": lambda t: t.logsumexp(),
}


def run_program(program, final, x, y):
    t = x
    for step in program:
        t = UNARY_STEPS[step](t) if step in UNARY_STEPS else BINARY_STEPS[step](t, y)
    return FINAL_STEPS[final](t)


@pytest.mark.parametrize("dtype", mvt.FLOAT_DTYPES, ids=str)
@given(shapes=mvt.broadcastable_shapes(2), data=st.data(),
       program=st.lists(st.sampled_from([*UNARY_STEPS, *BINARY_STEPS]), min_size=1, max_size=6),
       final=st.sampled_from(list(FINAL_STEPS)))
def test_random_programs_of_ops_have_correct_gradients(shapes, dtype, data, program, final):
    x = data.draw(mvt.tensors(mvt.float_arrays(shapes[0], dtype), name="x"))
    y = data.draw(mvt.tensors(mvt.float_arrays(shapes[1], dtype), name="y"))
    fn = lambda a, b: run_program(program, final, a, b)  # noqa: E731
    assert_dtype_preserved(fn, [x, y], dtype)
    assert mv.gradcheck(fn, x, y)



# ------------------------------------------------------------------------ what central differences cannot see
def test_a_maximum_shares_its_gradient_equally_among_ties():
    x = mv.Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]), requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])


@pytest.mark.parametrize("op, to_x", [(mv.maximum, [0.5, 1.0, 0.0]), (mv.minimum, [0.5, 0.0, 1.0])])
def test_maximum_and_minimum_split_the_gradient_in_half_at_a_tie(op, to_x):
    x = mv.Tensor(np.array([1.0, 2.0, -1.0]), requires_grad=True)
    y = mv.Tensor(np.array([1.0, 0.0, 0.0]), requires_grad=True)
    op(x, y).sum().backward()
    np.testing.assert_array_equal(x.grad, to_x)
    np.testing.assert_array_equal(y.grad, 1 - np.array(to_x))


def test_float32_sums_and_means_accumulate_in_float64_and_round_once():
    x = np.array([1e8, 1.0, -1e8], np.float32)  # in float32, 1e8 + 1 rounds back to 1e8
    for reduce, exact in ((mv.sum, 1.0), (mv.mean, 1 / 3)):
        for value in (reduce(x), reduce(mv.Tensor(x, requires_grad=True))):
            assert np.asarray(value).dtype == np.float32 and np.asarray(value) == np.float32(exact)


def test_comparisons_of_plain_arrays_are_plain_arrays():
    result = mv.less(np.array([1.0, 2.0]), np.array([2.0, 2.0]))
    assert type(result) is np.ndarray and result.tolist() == [True, False]
