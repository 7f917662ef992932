"""The public strategies of minivae.testing give what their docstrings promise."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minivae as mv
from minivae import testing as mvt


@given(mvt.shapes(min_dims=1, max_dims=2, min_side=2, max_side=3))
def test_shapes_respect_their_bounds(shape):
    assert 1 <= len(shape) <= 2 and all(2 <= side <= 3 for side in shape)


@given(st.integers(2, 3).flatmap(lambda count: st.tuples(st.just(count), mvt.broadcastable_shapes(count))))
def test_broadcastable_shapes_come_in_the_asked_number_and_broadcast(count_and_shapes):
    count, shapes = count_and_shapes
    assert len(shapes) == count
    np.broadcast_shapes(*shapes)


@given(mvt.matmul_shapes())
def test_matmul_shapes_multiply(shapes):
    x_shape, y_shape = shapes
    assert len(x_shape) >= 2 and len(y_shape) >= 2
    np.matmul(np.zeros(x_shape), np.zeros(y_shape))


@given(mvt.shapes(min_dims=1).flatmap(lambda shape: st.tuples(st.just(shape), mvt.reduction_axes(len(shape)))))
def test_reduction_axes_are_valid_for_the_shape(shape_and_axis):
    shape, axis = shape_and_axis
    np.sum(np.zeros(shape), axis=axis)


@given(mvt.float_dtypes().flatmap(lambda dtype: mvt.float_arrays(mvt.shapes(), dtype, -1.0, 2.0)))
def test_float_arrays_are_finite_and_within_bounds(a):
    assert a.dtype in mvt.FLOAT_DTYPES
    assert np.all((a >= -1.0) & (a <= 2.0))


@given(mvt.positive_arrays(mvt.shapes(), np.float32, low=0.5))
def test_positive_arrays_are_at_least_low(a):
    assert a.dtype == np.float32 and np.all(a >= 0.5)


@given(mvt.nonzero_arrays(mvt.shapes(), margin=0.3, high=2.0))
def test_nonzero_arrays_stay_margin_away_from_zero(a):
    assert np.all((np.abs(a) >= 0.3) & (np.abs(a) <= 2.0))


@given(mvt.distinct_arrays(mvt.shapes(), np.float32, margin=0.1))
def test_distinct_arrays_have_pairwise_gaps_of_margin(a):
    assert np.all(np.diff(np.sort(a, axis=None)) >= 0.1)


@given(mvt.separated_pairs(mvt.broadcastable_shapes(2), np.float32, margin=0.1))
def test_separated_pairs_differ_by_margin_everywhere_once_broadcast(pair):
    x, y = pair
    assert x.dtype == y.dtype == np.float32
    assert np.all(np.abs(x.astype(np.float64) - y) >= 0.1)


@given(mvt.tensors(mvt.float_arrays((2, 3)), name="w"))
def test_tensors_require_grad_and_carry_the_name(t):
    assert isinstance(t, mv.Tensor) and t.requires_grad and t.name == "w" and t.shape == (2, 3)


@given(mvt.tensors(mvt.float_arrays(()), requires_grad=False))
def test_tensors_can_be_constants(t):
    assert not t.requires_grad


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="dtype must be float32 or float64, got int64"):
        mvt.float_arrays((2,), np.int64)
    with pytest.raises(ValueError, match="positive_arrays: low must be positive, got 0"):
        mvt.positive_arrays((2,), low=0)


# ------------------------------------------------------------------------ programs
def replay(program):
    """Every step's argument values, recomputed: (step, arrays) pairs."""
    values = dict(zip(program.input_names, program.inputs))
    replayed = []
    with mv.no_grad():
        for step in program.steps:
            arrays = [values[name] for name in step.args]
            replayed.append((step, arrays))
            values[step.out] = step.entry.fn(*[mv.Tensor(a) for a in arrays], **step.params).data
    return replayed


@given(mvt.programs(max_ops=5))
def test_programs_call_each_op_inside_its_domain_and_end_with_their_last_value(program):
    assert 1 <= len(program) <= 5 and program.output == program.steps[-1].out
    for step, arrays in replay(program):
        assert step.entry.accepts(arrays[0].shape)
        for domain, array in zip(step.entry.domains, arrays):
            assert domain.contains(array, arrays[0]), (step, domain)
    assert all(isinstance(a, np.ndarray) and a.dtype == np.float64 for a in program.inputs)


@given(mvt.programs(dtype=np.float32))
def test_a_printed_program_is_python_that_rebuilds_it(program):
    namespace = {}
    exec(repr(program), namespace)
    assert len(namespace["inputs"]) == len(program.inputs)
    for printed, drawn in zip(namespace["inputs"], program.inputs):
        assert printed.dtype == drawn.dtype and printed.shape == drawn.shape
        np.testing.assert_array_equal(printed, drawn)
    with mv.no_grad():
        np.testing.assert_array_equal(namespace["program"](*namespace["inputs"]).data, program(*program.inputs).data)


@pytest.mark.parametrize("op", mvt.POOL, ids=lambda op: op.name)
def test_every_op_of_the_pool_can_be_drawn_and_checked_alone(op):
    @settings(max_examples=10)
    @given(mvt.programs((op,), max_ops=2))
    def check(program):
        assert all(step.entry is op for step in program.steps)
        assert mv.gradcheck(program, *program.inputs)
    check()


def test_a_users_op_joins_the_pool_with_its_own_domain():
    seen = []

    def cube_root(x):
        seen.append(x.data.copy())
        return x ** (1 / 3)
    pool = (mvt.PoolEntry("cube_root", cube_root, domains=(mvt.POSITIVE,)),)

    @given(mvt.programs(pool, max_ops=3))
    def check(program):
        assert "cube_root(" in repr(program)
        assert mv.gradcheck(program, *program.inputs)
    check()
    assert seen and all(np.all(x >= 0.2) for x in seen)


def test_bad_arguments_to_programs_are_refused():
    with pytest.raises(ValueError, match="programs: pool must be a non-empty sequence of PoolEntry"):
        mvt.programs(())
    with pytest.raises(ValueError, match="programs: max_ops must be at least 1, got 0"):
        mvt.programs(max_ops=0)
    with pytest.raises(ValueError, match="PoolEntry f: 2 domains for 3 arguments"):
        mvt.PoolEntry("f", lambda *x: x[0], 3, (mvt.REAL, mvt.REAL))
    with pytest.raises(ValueError, match="dtype must be float32 or float64, got int64"):
        mvt.programs(dtype=np.int64)


def uses(program, *pairs):
    """Whether some step of ``program`` calls an op named in ``pairs[i][1]`` on the output of one in ``pairs[i][0]``."""
    producer = {step.out: step.entry.name for step in program.steps}
    return any(producer.get(arg) in before and step.entry.name in after
               for before, after in pairs for step in program.steps for arg in step.args)


BROADCASTING = {"mv.add", "mv.sub", "mv.mul", "mv.div", "mv.pow", "mv.where", "mv.binary_cross_entropy_with_logits"}
REDUCTIONS = {"mv.sum", "mv.mean", "mv.max", "mv.logsumexp"}


def pool(*names):
    return tuple(entry for entry in mvt.POOL if entry.name in names)


@pytest.mark.parametrize("description, ops, found", [
    ("a reduction feeding a broadcasting op", pool("mv.sum", "mv.max", "mv.add", "mv.mul"),
     lambda p: uses(p, (REDUCTIONS, BROADCASTING))),
    ("indexing after a transpose", pool("mv.transpose", "mv.getitem"),
     lambda p: uses(p, ({"mv.transpose"}, {"mv.getitem"}))),
    ("a tensor used twice by one call", pool("mv.mul", "mv.exp"),
     lambda p: any(len(set(step.args)) < len(step.args) for step in p.steps)),
    ("an intermediate value used by two calls", pool("mv.add", "mv.mul", "mv.tanh"),
     lambda p: any(sum(name in step.args for step in p.steps) >= 2 for name in (s.out for s in p.steps))),
    ("repeated indices", pool("mv.getitem"),
     lambda p: any(isinstance(step.params.get("index"), np.ndarray) and step.params["index"].dtype.kind == "i"
                   and len(set(step.params["index"].tolist())) < step.params["index"].size for step in p.steps)),
], ids=lambda value: value if isinstance(value, str) else "")
def test_programs_reach_the_compositions_that_hand_written_tests_miss(description, ops, found):
    seen = []

    @settings(max_examples=200, database=None, derandomize=True)
    @given(mvt.programs(ops))
    def look(program):
        if found(program):
            seen.append(program)
    look()
    assert seen, f"no program of 200 had {description}"
    assert mv.gradcheck(seen[0], *seen[0].inputs)


# ------------------------------------------------------------------------ in_float64: a module's own tensors
def test_in_float64_casts_a_modules_parameters_and_buffers_and_nothing_else():
    model = mv.VAE(input_dim=4, hidden=(3,), latent_dim=2, rng=0)
    assert [name for name, _ in model.named_buffers()] == ["prior.mu", "prior.logvar"]
    outer = mv.nn.Sequential(model)
    assert [name for name, _ in outer.named_buffers()] == ["0.prior.mu", "0.prior.logvar"]
    model.unrelated = np.zeros(2, np.float32)  # not a parameter nor a buffer: not the module's state
    with mvt.in_float64(outer):
        assert model.dtype == model.prior.logvar.dtype == np.float64
        assert all(t.dtype == np.float64 for t in [*model.parameters(), *model.buffers()])
        assert model.unrelated.dtype == np.float32
        assert model.negative_elbo(np.zeros((1, 4)), np.random.default_rng(0)).dtype == np.float64
    assert model.dtype == model.prior.mu.dtype == np.float32


def test_in_float64_takes_a_module_whose_constants_follow_its_parameters():
    encoder = mv.linear_gaussian.LinearGaussianEncoder(*(a.astype(np.float32) for a in (
        np.zeros((2, 3)), np.zeros(2), np.zeros((2, 2)), np.zeros(2))))
    with mvt.in_float64(encoder):
        assert encoder.scale_tril().dtype == np.float64
    assert encoder.scale_tril().dtype == np.float32


def test_in_float64_refuses_what_is_not_a_tensor_a_module_or_an_iterable_of_them():
    prior = mv.VAE(input_dim=4, hidden=(), latent_dim=2, rng=0).prior  # a distribution: not a Module
    with pytest.raises(TypeError, match="in_float64: expected Tensors, Modules or iterables of them, got "
                                        "StandardNormal"):
        with mvt.in_float64(prior):
            pass


def test_gradchecks_advice_names_an_import_that_needs_no_test_extra():
    model = mv.nn.Linear(3, 2, rng=0)
    with pytest.raises(TypeError) as error:
        mv.gradcheck(lambda t: model(t).sum(), np.ones((4, 3)))
    assert "`with in_float64(module):` (from minivae.gradcheck)" in str(error.value)
    from minivae.gradcheck import in_float64
    assert in_float64 is mvt.in_float64
