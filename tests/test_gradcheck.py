"""gradcheck passes correct gradients, catches wrong ones and says where."""
import numpy as np
import pytest
from hypothesis import given

import minivae as mv
from minivae import testing as mvt


@mv.primitive
def wrong_square(x):
    return x * x
wrong_square.defvjp(lambda ctx, g: (g * ctx.inputs[0],))  # the correct VJP is 2·g·x


@mv.primitive
def scale_ignoring_g(x):
    return 3 * x
scale_ignoring_g.defvjp(lambda ctx, g: (np.full_like(ctx.inputs[0], 3.0),))  # the correct VJP is 3·g


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
