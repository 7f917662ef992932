"""gradcheck passes correct gradients, catches wrong ones and says where."""
import numpy as np
import pytest
from hypothesis import given

import minivae as mv
from minivae.gradcheck import FAST_ABOVE
from minivae import testing as mvt


def op_with_vjp(forward, vjp):
    """An engine op of one tensor argument with the given forward and (deliberately chosen) VJP ``vjp(g, ans, x)``."""
    op = mv.primitive(forward)
    op.defvjp(lambda ctx, g: (vjp(g, ctx.ans, ctx.inputs[0]),))
    return op


def _square(x):
    return x * x


def _triple(x):
    return 3 * x


def _identity_inf_above_one(x):
    return np.where(x > 1.0, np.inf, x)


wrong_square = op_with_vjp(_square, lambda g, ans, x: g * x)  # the correct VJP is 2·g·x
scale_ignoring_g = op_with_vjp(_triple, lambda g, ans, x: np.full_like(x, 3.0))  # the correct VJP is 3·g
infinite_slope = op_with_vjp(_triple, lambda g, ans, x: g * np.where(x == 0, np.inf, 3.0))  # wrong at 0
inf_above_one = op_with_vjp(_identity_inf_above_one, lambda g, ans, x: g)


def test_returns_true_for_a_correct_gradient():
    x = mv.Tensor(np.linspace(-1.0, 1.0, 6).reshape(2, 3), requires_grad=True)
    assert mv.gradcheck(lambda t: (t * t).tanh(), x) is True


def test_a_wrong_vjp_is_reported_with_input_element_values_and_relative_error():
    x = mv.Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True, name="x")
    with pytest.raises(mv.GradcheckError) as caught:
        mv.gradcheck(lambda t: wrong_square(t).sum(), x)
    message = str(caught.value)
    assert message.startswith("gradcheck: wrong gradient for input 0 'x' of shape (3,): 3 of 3 elements differ")
    assert "worst element (2,): analytic 3, numeric 6," in message
    assert "relative error 0.5" in message
    assert "atol=1e-05, rtol=0.001" in message


def test_gradcheck_error_is_an_assertion_error_naming_the_failing_input_among_several():
    good = mv.Tensor(np.ones(2), requires_grad=True, name="good")
    bad = mv.Tensor(np.array([[0.5, -1.5]]), requires_grad=True)
    with pytest.raises(AssertionError, match=r"input 1 of shape \(1, 2\)"):
        mv.gradcheck(lambda a, b: (a * wrong_square(b)).sum(), good, bad)


def test_non_scalar_outputs_are_checked_with_a_random_cotangent():
    """A VJP that ignores the output gradient agrees with an all-ones cotangent, not with a random one."""
    x = mv.Tensor(np.arange(4.0), requires_grad=True)
    assert mv.gradcheck(lambda t: scale_ignoring_g(t).sum(), x)
    with pytest.raises(mv.GradcheckError):
        mv.gradcheck(scale_ignoring_g, x)


def test_an_input_the_graph_does_not_reach_is_caught():
    x = mv.Tensor(np.array([0.5, 2.0]), requires_grad=True)
    with pytest.raises(mv.GradcheckError, match="analytic 0, numeric 1"):
        mv.gradcheck(lambda t: (t.detach() + 0 * t).sum(), x)


def test_a_nan_gradient_fails():
    x = mv.Tensor(np.array([0.0, 1.0]), requires_grad=True)
    with pytest.raises(mv.GradcheckError, match="analytic nan"), np.errstate(divide="ignore", invalid="ignore"):
        mv.gradcheck(lambda t: (t * 0).sqrt().sum(), x)  # d sqrt(0·t)/dt = 0 · 0.5/0


@given(mvt.tensors(mvt.float_arrays(mvt.shapes(), np.float32)))
def test_float32_inputs_are_checked_in_float64_and_left_untouched(x):
    before = x.data.copy()
    assert mv.gradcheck(lambda t: (t ** 3).sum(), x)
    np.testing.assert_array_equal(x.data, before)
    assert x.data.dtype == np.float32 and x.grad is None


def test_arrays_require_grad_and_tensors_keep_their_flag():
    seen = []

    def fn(a, b, index):
        seen.append((a.dtype, a.requires_grad, b.requires_grad, index))
        return (a[index] * b).sum()
    index = np.array([1, 1, 0])
    constant = mv.Tensor(np.ones(3, np.float32))
    assert mv.gradcheck(fn, np.arange(3.0, dtype=np.float32), constant, index)
    assert seen[0][:3] == (np.float64, True, False) and seen[0][3] is index


def test_fn_must_return_a_tensor():
    with pytest.raises(TypeError, match="gradcheck: fn must return a Tensor, got ndarray"):
        mv.gradcheck(lambda t: t.data * 2, mv.Tensor(np.ones(2), requires_grad=True))


def test_some_input_must_require_grad():
    with pytest.raises(ValueError, match="gradcheck: no input requires grad"):
        mv.gradcheck(lambda t: t * 2, mv.Tensor(np.ones(2)))


# ------------------------------------------------------------------------ non-finite values
def test_an_infinite_analytic_value_is_reported_as_such_with_both_values():
    x = mv.Tensor(np.array([0.0, 1.0]), requires_grad=True)
    with pytest.raises(mv.GradcheckError) as caught:
        mv.gradcheck(lambda t: infinite_slope(t).sum(), x)
    message = str(caught.value)
    assert "worst element (0,): analytic inf, numeric 3," in message
    assert "relative error inf" in message and "nan" not in message


def test_an_infinite_numeric_value_fails_instead_of_passing():
    """At x = 1 the function jumps to inf: the central difference is inf and no tolerance covers it."""
    x = mv.Tensor(np.array([0.5, 1.0]), requires_grad=True)
    with pytest.raises(mv.GradcheckError, match=r"worst element \(1,\): analytic 1, numeric inf, "
                                                r"\|difference\| inf, relative error inf"):
        mv.gradcheck(lambda t: inf_above_one(t).sum(), x)


def test_a_non_finite_directional_derivative_fails_the_fast_check():
    x = mv.Tensor(np.linspace(-1.0, 1.0, 50), requires_grad=True)  # x[-1] = 1: numeric inf
    with pytest.raises(mv.GradcheckError, match=r"fast check.*numeric inf.*relative error inf"):
        mv.gradcheck(lambda t: inf_above_one(t).sum(), x, fast=True)


# ------------------------------------------------------------------------ the fast check
def counting(fn):
    """fn, counting its calls in ``.calls``."""
    def counted(*args):
        counted.calls += 1
        return fn(*args)
    counted.calls = 0
    return counted


def test_the_fast_check_needs_a_few_evaluations_whatever_the_size():
    rng = np.random.default_rng(1)
    x = mv.Tensor(rng.standard_normal((8, 60)))
    w = mv.Tensor(rng.standard_normal((60, 50)) * 0.1, requires_grad=True, name="w")
    fn = counting(lambda w: (x @ w).tanh().sum(axis=0))
    assert mv.gradcheck(fn, w, fast=True, directions=3)
    assert fn.calls == 3 + 2 * 3  # one forward per cotangent, two per direction
    exhaustive = counting(fn)
    assert mv.gradcheck(exhaustive, w, fast=False)
    assert exhaustive.calls == 1 + 2 * w.size


def test_by_default_large_inputs_get_the_fast_check_and_small_ones_every_element():
    small = mv.Tensor(np.linspace(-1, 1, FAST_ABOVE), requires_grad=True)
    large = mv.Tensor(np.linspace(-1, 1, FAST_ABOVE + 1), requires_grad=True)
    fn = counting(lambda a, b: a.tanh().sum() + b.sigmoid().sum())
    assert mv.gradcheck(fn, small, large)
    # the small input element by element, the large one along 2 directions
    assert fn.calls == 2 + 2 * small.size + 2 * 2


def test_the_fast_check_catches_a_wrong_vjp_and_names_an_element_with_both_values():
    w = mv.Tensor(np.random.default_rng(2).uniform(0.5, 1.5, (40, 30)), requires_grad=True, name="w")
    with pytest.raises(mv.GradcheckError) as caught:
        mv.gradcheck(lambda t: wrong_square(t).sum(), w, fast=True)
    message = str(caught.value)
    assert message.startswith("gradcheck: wrong gradient for input 0 'w' of shape (40, 30) (fast check, direction 1): "
                              "directional derivative uᵀJv analytic")
    assert "relative error 0.5\n" in message  # the analytic derivative is half the true one along any direction
    assert "localised by bisection to elements" in message
    worst = message.split("worst element ")[1]
    index = tuple(int(k) for k in worst[1:worst.index(")")].split(","))
    assert f"analytic {w.data[index]:.8g}, numeric {2 * w.data[index]:.8g}," in worst


def test_the_fast_check_localises_a_single_wrong_element():
    shape, bad = (50, 40), (37, 11)
    mask = np.zeros(shape)
    mask[bad] = 1.0
    one_wrong = op_with_vjp(lambda x: np.tanh(x), lambda g, ans, x: g * (1 - ans * ans) * (1 + 2 * mask))
    w = mv.Tensor(np.random.default_rng(3).uniform(-1, 1, shape), requires_grad=True)
    with pytest.raises(mv.GradcheckError, match=r"1 of them differ\n  worst element \(37, 11\): analytic "):
        mv.gradcheck(lambda t: one_wrong(t).sum(), w, fast=True)


@given(mvt.tensors(mvt.float_arrays(mvt.shapes(min_dims=1, max_side=6))))
def test_the_fast_check_passes_correct_gradients(x):
    assert mv.gradcheck(lambda t: (t.tanh() * t).sum(axis=0) + t.sigmoid().logsumexp(), x, fast=True)


def test_directions_must_be_positive():
    with pytest.raises(ValueError, match="gradcheck: directions must be an int of at least 1, got 0"):
        mv.gradcheck(lambda t: t.sum(), mv.Tensor(np.ones(2), requires_grad=True), directions=0)


# ------------------------------------------------------------------------ tensors a function holds; float32 models
def test_a_float32_module_is_checked_in_float64_with_params_and_left_as_it_was():
    model = mv.nn.MLP([5, 4, 3], activation="tanh", rng=0)
    x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32)
    params = dict(model.named_parameters())
    arrays = {name: p.data for name, p in params.items()}
    values = {name: p.data.copy() for name, p in params.items()}
    params["0.bias"].grad = np.full(4, 7.0, np.float32)
    assert mv.gradcheck(lambda t: model(t).tanh().sum(), x, params=model)
    for name, p in model.named_parameters():
        assert p is params[name] and p.data is arrays[name] and p.dtype == np.float32
        np.testing.assert_array_equal(p.data, values[name])
    assert params["0.bias"].grad.tolist() == [7.0] * 4 and params["0.weight"].grad is None


def test_a_wrong_gradient_of_a_parameter_is_named():
    model = mv.nn.Linear(3, 2, rng=0)
    with pytest.raises(mv.GradcheckError, match=r"wrong gradient for parameter 'weight' of shape \(2, 3\)"):
        mv.gradcheck(lambda t: wrong_square(model(t)).sum(), mv.Tensor(np.ones((4, 3))), params=model)


def test_params_may_be_a_list_of_tensors():
    w = mv.Tensor(np.array([[0.5, -1.0]], np.float32), requires_grad=True, name="w")
    assert mv.gradcheck(lambda t: (t * w).tanh().sum(), np.ones((3, 2)), params=[w])
    assert w.dtype == np.float32
    with pytest.raises(mv.GradcheckError, match="parameter 0 'w'"):
        mv.gradcheck(lambda t: wrong_square(t * w).sum(), mv.Tensor(np.ones((3, 2))), params=[w])
    for wrong in (np.ones(2), mv.Tensor(np.ones(2)), w * 2):
        with pytest.raises(TypeError, match="gradcheck: params must be a Module or leaf Tensors that require grad; "
                                            "item 0"):
            mv.gradcheck(lambda t: t.sum(), np.ones(2), params=[wrong])


def test_a_read_only_float64_parameter_is_checked_on_a_copy_and_keeps_its_array():
    data = np.array([0.5, -1.0])
    data.flags.writeable = False
    w = mv.Tensor(data, requires_grad=True)
    assert mv.gradcheck(lambda t: (t * w).tanh().sum(), np.ones((3, 2)), params=[w], fast=True)
    assert w.data is data and w.grad is None


def test_a_vae_is_checked_in_float64_through_its_negative_elbo():
    model = mv.VAE(input_dim=6, hidden=(5,), latent_dim=2, rng=0)
    x = (np.random.default_rng(0).uniform(size=(3, 6)) > 0.5).astype(np.float32)

    def loss(batch):
        return model.negative_elbo(batch, np.random.default_rng(1), samples=2)
    assert mv.gradcheck(loss, mv.Tensor(x), params=model)
    assert model.dtype == np.float32 and model.prior.mu.dtype == np.float32
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_a_dtype_clash_inside_fn_says_how_to_check_a_float32_model():
    model = mv.nn.Linear(3, 2, rng=0)
    with pytest.raises(TypeError, match=r"^gradcheck: fn failed on float64 inputs: \w+: dtypes differ "
                                        r"\(float64 and float32\).*pass them as params=module"):
        mv.gradcheck(lambda t: model(t).sum(), np.ones((4, 3)))


def test_in_float64_casts_for_the_block_and_restores_even_after_an_error():
    model = mv.VAE(input_dim=4, hidden=(3,), latent_dim=2, rng=0)
    weight = model.encoder_mu.weight
    original = weight.data
    with pytest.raises(RuntimeError, match="inside"):
        with mvt.in_float64(model):
            assert weight.dtype == model.dtype == model.prior.mu.dtype == np.float64
            np.testing.assert_array_equal(weight.data, original)
            model.negative_elbo(np.zeros((1, 4)), np.random.default_rng(0)).backward()
            raise RuntimeError("inside")
    assert weight.data is original and weight.grad is None and model.dtype == np.float32
    with pytest.raises(TypeError, match="in_float64: expected Tensors, Modules or iterables of them, got str"):
        with mvt.in_float64("model"):
            pass


# ---------------------------------------------------------------- second derivatives
def cube_with_constant_slope():
    """x³ whose VJP treats x as a constant: right first derivative, second derivative 0 instead of 6x."""
    @mv.primitive
    def cube(x):
        return x ** 3

    @cube.defvjp
    def cube_vjp(ctx, g):
        x, = ctx.inputs
        return (g * 3 * mv.engine.ops.value(x) ** 2,)
    return cube


def test_order_2_checks_second_derivatives_and_catches_a_wrong_one():
    x = mv.Tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True, name="x")
    assert mv.gradcheck(lambda t: (t.tanh() * t).sum(), x, order=2)
    assert mv.gradcheck(lambda t: t.softmax() * t, x, order=2, fast=True)
    cube = cube_with_constant_slope()
    assert mv.gradcheck(cube, x)  # the first derivative is right
    with pytest.raises(mv.GradcheckError, match="input 0 'x'"):
        mv.gradcheck(cube, x, order=2)


def test_order_2_through_a_float32_module_on_both_backends():
    model = mv.nn.MLP([3, 4, 2], activation="tanh", rng=0)
    x = np.random.default_rng(0).standard_normal((5, 3))
    for backend in mv.kernels.BACKENDS:
        with mv.kernels.use(backend):
            assert mv.gradcheck(lambda t: model(t).sum(), x, params=model, order=2)


def test_order_must_be_1_or_2():
    with pytest.raises(ValueError, match="gradcheck: order must be 1 or 2, got 3"):
        mv.gradcheck(mv.exp, np.ones(2), order=3)


def square_with_wrong_recorded_backward():
    """x² whose backward is right on arrays (2gx) but, run on Tensors (create_graph), gives 4gx: wrong
    and yet consistent with its own central differences."""
    @mv.primitive
    def square(x):
        return x * x

    @square.defvjp
    def square_vjp(ctx, g):
        x, = ctx.inputs
        return (g * (4 if isinstance(x, mv.Tensor) else 2) * x,)
    return square


def test_order_2_compares_the_recorded_first_derivatives_with_backward():
    square = square_with_wrong_recorded_backward()
    x = mv.Tensor(np.array([0.5, -1.0]), requires_grad=True, name="x")
    assert mv.gradcheck(lambda t: square(t).sum(), x)
    with pytest.raises(mv.GradcheckError, match="recorded with create_graph differ from backward's for input 0 'x'"):
        mv.gradcheck(lambda t: square(t).sum(), x, order=2)


# ---------------------------------------------------------------- what gradcheck leaves behind, and its arguments
def test_no_grad_is_written_to_tensors_it_was_not_asked_to_check():
    """A leaf fn closes over and a module's parameters not passed as params= keep their .grad (the same
    arrays, the same values): gradcheck differentiates the leaves it checks only."""
    w = mv.Tensor(np.array([0.5, -1.0]), requires_grad=True)
    w.grad = kept = np.array([10.0, 10.0])
    model = mv.nn.Linear(2, 2, rng=0, dtype=np.float64)
    untouched = model.bias.grad
    for order in (1, 2):
        for fast in (False, True):
            assert mv.gradcheck(lambda t: (model(t * w).tanh() ** 2).sum(), np.ones((3, 2)), fast=fast, order=order)
            assert w.grad is kept and kept.tolist() == [10.0, 10.0]
            assert model.weight.grad is None and model.bias.grad is untouched


def test_the_grads_of_checked_params_are_left_as_they_were():
    model = mv.nn.Linear(2, 2, rng=0, dtype=np.float64)
    model.weight.grad = kept = np.full((2, 2), 3.0)
    assert mv.gradcheck(lambda t: model(t).tanh().sum(), np.ones((3, 2)), params=model, order=2)
    assert model.weight.grad is kept and kept.tolist() == [[3.0, 3.0], [3.0, 3.0]] and model.bias.grad is None


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("interruption", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_check_leaves_a_float64_param_exactly_as_it_was(fast, interruption):
    """Ctrl-C (or any error of fn) in the middle of the central differences: the parameter's array is
    the same object with the same values (it was left perturbed by ε)."""
    data = np.array([0.5, -1.0, 2.0])
    w = mv.Tensor(data, requires_grad=True)
    w.grad = kept = np.ones(3)

    def fn(t):
        if w.data.tolist() != [0.5, -1.0, 2.0]:  # inside the central differences, with w perturbed
            raise interruption("stop")
        return (t * w).tanh().sum()
    with pytest.raises(interruption):
        mv.gradcheck(fn, np.ones(3), params=[w], fast=fast)
    assert w.data is data and data.tolist() == [0.5, -1.0, 2.0] and w.grad is kept


@pytest.mark.parametrize("keyword, value, message", [
    ("eps", 0, "eps must be a positive finite number, got 0"),
    ("eps", -1e-6, "eps must be a positive finite number, got -1e-06"),
    ("eps", float("nan"), "eps must be a positive finite number, got nan"),
    ("eps", float("inf"), "eps must be a positive finite number, got inf"),
    ("eps", "1e-6", "eps must be a positive finite number, got '1e-6'"),
    ("atol", -1.0, "atol must be a non-negative finite number, got -1.0"),
    ("atol", float("nan"), "atol must be a non-negative finite number, got nan"),
    ("rtol", float("inf"), "rtol must be a non-negative finite number, got inf"),
    ("rtol", None, "rtol must be a non-negative finite number, got None"),
    ("directions", 1.5, "directions must be an int of at least 1, got 1.5"),
    ("directions", True, "directions must be an int of at least 1, got True"),
    ("directions", 0, "directions must be an int of at least 1, got 0"),
])
def test_bad_tolerances_steps_and_directions_are_clear_errors(keyword, value, message):
    with pytest.raises(ValueError, match=f"^gradcheck: {message}$"):
        mv.gradcheck(lambda t: t.sum(), np.ones(2), **{keyword: value})


def test_atol_and_rtol_of_zero_are_allowed():
    assert mv.gradcheck(lambda t: t.sum() * 2.0, np.ones(2), atol=0.0, rtol=1e-9)


def test_inputs_packed_in_a_tuple_as_pytorch_takes_them_are_named_in_the_error():
    x = mv.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    with pytest.raises(ValueError, match=r"each as its own argument \(gradcheck\(fn, x, y\), not"):
        mv.gradcheck(lambda a: (a ** 3).sum(), (x,))
