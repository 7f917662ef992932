"""Ops with exponentials stay finite, and accurate, at extreme inputs, in float32 and float64."""
import numpy as np
import pytest

import minivae as mv

DTYPES = [np.float32, np.float64]


def value_and_gradient(fn, values, dtype):
    """fn(x) and d sum(fn(x)) / dx, raising on any overflow, invalid operation or division by zero."""
    x = mv.Tensor(np.array(values, dtype), requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = fn(x)
        out.sum().backward()
    assert out.dtype == x.grad.dtype == dtype
    return out.data, x.grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_bce_with_logits_of_plus_minus_1e4_is_finite_and_exact(dtype, reduction):
    logits = [1e4, 1e4, -1e4, -1e4]
    targets = np.array([1.0, 0.0, 1.0, 0.0], dtype)
    loss, grad = value_and_gradient(
        lambda z: mv.binary_cross_entropy_with_logits(z, targets, reduction=reduction), logits, dtype)
    per_element = np.array([0.0, 1e4, 1e4, 0.0])
    expected = {"none": per_element, "sum": per_element.sum(), "mean": per_element.mean()}[reduction]
    np.testing.assert_allclose(loss, expected)
    scale = 1 / 4 if reduction == "mean" else 1  # d/dz = σ(z) - t, per element
    np.testing.assert_allclose(grad, scale * np.array([0.0, 1.0, -1.0, 0.0]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op, outputs, gradients", [
    (mv.softplus, [1e4, 0.0], [1.0, 0.0]),
    (mv.log_sigmoid, [0.0, -1e4], [0.0, 1.0]),
    (mv.sigmoid, [1.0, 0.0], [0.0, 0.0]),
])
def test_sigmoid_family_at_plus_minus_1e4(dtype, op, outputs, gradients):
    out, grad = value_and_gradient(op, [1e4, -1e4], dtype)
    np.testing.assert_allclose(out, outputs)
    np.testing.assert_allclose(grad, gradients)


@pytest.mark.parametrize("dtype, x", [(np.float64, -700.0), (np.float32, -80.0)])
def test_sigmoid_and_log_sigmoid_keep_relative_precision_in_the_negative_tail(dtype, x):
    sigma, _ = value_and_gradient(mv.sigmoid, [x], dtype)
    np.testing.assert_allclose(sigma, np.exp(x), rtol=1e-5)
    log_sigma, grad = value_and_gradient(mv.log_sigmoid, [x], dtype)
    np.testing.assert_allclose(log_sigma, x, rtol=1e-6)
    np.testing.assert_allclose(grad, 1.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_at_extremes(dtype):
    values = [[1e4, 1e4], [-1e4, -1e4], [1e4, -1e4]]
    out, grad = value_and_gradient(lambda x: x.logsumexp(axis=1), values, dtype)
    np.testing.assert_allclose(out, [1e4 + np.log(2), -1e4 + np.log(2), 1e4], rtol=1e-6)
    np.testing.assert_allclose(grad, [[0.5, 0.5], [0.5, 0.5], [1.0, 0.0]])
    total, _ = value_and_gradient(lambda x: x.logsumexp(), values, dtype)
    np.testing.assert_allclose(total, 1e4 + np.log(3), rtol=1e-6)


def exact_log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """log_softmax of x's values, in float64 with the shift by the maximum exact (x - m is exact there)."""
    x = x.astype(np.float64)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1e4), (np.float32, 1e6), (np.float64, 1e12), (np.float64, 1e15)])
def test_softmax_and_log_softmax_keep_their_precision_as_the_inputs_grow(dtype, scale):
    """The shift by the maximum is exact (x − m), and nothing of the size of m is rounded into the result:
    float32 log_softmax at 1e4 was 1e-3 off (PyTorch: 1e-7), float64 softmax at 1e15 summed to 0.974."""
    offsets = np.array([[0.0, 1.0, -2.0, 0.5], [3.0, -1.0, 0.25, 2.0]])
    x = (scale + offsets).astype(dtype)
    exact = exact_log_softmax(x)
    log_p, _ = value_and_gradient(lambda t: t.log_softmax(axis=-1), x, dtype)
    p, _ = value_and_gradient(lambda t: t.softmax(axis=-1), x, dtype)
    tolerance = 4 * np.finfo(dtype).eps
    np.testing.assert_allclose(log_p, exact, rtol=tolerance)
    np.testing.assert_allclose(p, np.exp(exact), rtol=tolerance)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=tolerance)
    np.testing.assert_allclose(mv.log_softmax(x, axis=0), exact_log_softmax(x, axis=0), rtol=tolerance)


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_softmax_matches_pytorch_at_1e4(dtype):
    torch = pytest.importorskip("torch")
    x = (1e4 + np.random.default_rng(0).standard_normal((3, 7))).astype(dtype)
    ours, theirs = mv.log_softmax(x, axis=-1), torch.log_softmax(torch.from_numpy(x), dim=-1).numpy()
    exact = exact_log_softmax(x)
    assert np.max(np.abs(ours - exact) / np.abs(exact)) <= 2 * np.max(np.abs(theirs - exact) / np.abs(exact)) + \
        2 * np.finfo(dtype).eps


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_gradients_of_log_softmax_and_softmax_at_large_inputs(dtype):
    x = (1e4 + np.array([[0.0, 1.0, -2.0]])).astype(dtype)
    p = np.exp(exact_log_softmax(x))
    seed = np.array([[1.0, 0.0, 0.0]])
    t = mv.Tensor(x, requires_grad=True)
    t.log_softmax().backward(seed.astype(dtype))
    np.testing.assert_allclose(t.grad, seed - p * seed.sum(), rtol=8 * np.finfo(dtype).eps, atol=1e-6)
    t = mv.Tensor(x, requires_grad=True)
    t.softmax().backward(seed.astype(dtype))
    np.testing.assert_allclose(t.grad, p * (seed - (p * seed).sum()), rtol=16 * np.finfo(dtype).eps, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_over_an_empty_axis_is_minus_infinity_as_in_pytorch_and_jax(dtype):
    """log Σ over no terms is log 0 = −inf (it was an error from np.max); its gradient is empty."""
    x = mv.Tensor(np.zeros((2, 0), dtype), requires_grad=True)
    with np.errstate(all="raise"):
        out = x.logsumexp(axis=1)
        out.sum().backward()
    assert out.dtype == dtype
    np.testing.assert_array_equal(out.data, [-np.inf, -np.inf])
    assert x.grad.shape == (2, 0)
    np.testing.assert_array_equal(mv.logsumexp(np.zeros((0, 3), dtype), axis=0, keepdims=True), [[-np.inf] * 3])
    assert mv.logsumexp(np.zeros(0, dtype)) == -np.inf
    assert mv.softmax(np.zeros((2, 0), dtype)).shape == mv.log_softmax(np.zeros((2, 0), dtype)).shape == (2, 0)
    torch = pytest.importorskip("torch")
    assert torch.logsumexp(torch.zeros(2, 0), dim=1).tolist() == [-np.inf, -np.inf]


@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_of_minus_infinities_is_minus_infinity_quietly(dtype):
    with np.errstate(all="raise"):
        np.testing.assert_array_equal(mv.logsumexp(np.full((2, 3), -np.inf, dtype), axis=1), [-np.inf, -np.inf])


# An op that routes its gradient by a mask (relu, maximum, minimum, max) passes exactly 0 where the
# mask is 0, whatever arrives there: an infinite gradient (sqrt at 0 downstream) at a clipped
# element is selected away, not multiplied by 0 into NaN (as PyTorch and JAX do for relu and
# maximum), and the fused linear_relu, which selects, agrees with its composite.
_MASKED = {
    "relu": lambda x: mv.relu(x),
    "maximum": lambda x: mv.maximum(x, np.zeros_like(x.data)),
    "minimum": lambda x: -mv.minimum(-x, np.zeros_like(x.data)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["relu", "maximum", "minimum"])
def test_a_masked_gradient_is_zero_where_the_mask_is_zero_even_if_infinite(dtype, name):
    x = mv.Tensor(np.array([-1.0, 2.0], dtype), requires_grad=True)
    mv.sqrt(_MASKED[name](x)).sum().backward()
    assert np.array_equal(x.grad, np.array([0.0, 0.5 / np.sqrt(2.0)], dtype))
    x.grad = None
    first, = mv.gradients(mv.sqrt(_MASKED[name](x)).sum(), [x], create_graph=True)
    assert np.all(np.isfinite(first.data)) and first.data[0] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_gradient_of_max_is_zero_at_the_losers_even_if_infinite(dtype):
    x = mv.Tensor(np.array([[-1.0, 0.0], [3.0, 1.0]], dtype), requires_grad=True)
    y = mv.max(x, axis=1)                          # [0, 3]: the loser of row 0 is -1, of row 1 is 1
    mv.sqrt(y).sum().backward()                    # ∞ reaches row 0
    assert x.grad[0, 0] == 0 and x.grad[1, 1] == 0 and np.isclose(x.grad[1, 0], 0.5 / np.sqrt(3.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_relu_fused_and_composite_agree_on_an_infinite_gradient_at_a_clipped_unit(dtype):
    x = np.array([[1.0, -2.0]], dtype)
    weight, bias = np.array([[1.0, 0.0], [0.0, 1.0]], dtype), np.zeros(2, dtype)
    grads = []
    for f in (mv.functions.linear_relu.implementation, mv.functions.linear_relu.composite):
        w = mv.Tensor(weight.copy(), requires_grad=True)
        mv.sqrt(f(mv.Tensor(x), w, mv.Tensor(bias))).sum().backward()
        grads.append(w.grad)
    assert np.all(np.isfinite(grads[1])) and np.array_equal(grads[0], grads[1])


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_the_derivative_of_sigmoid_keeps_its_relative_precision_in_both_tails(dtype, rtol):
    # σ'(x) = σ(x) σ(-x) = e^-|x| / (1 + e^-|x|)²; σ(1 - σ) loses it for x > 0, where 1 - σ cancels. It is
    # also the second derivative of softplus and (negated, at -x) of log_sigmoid.
    x = np.array([-30.0, -20.0, -5.0, 0.0, 5.0, 20.0, 30.0], dtype)
    e = np.exp(-np.abs(x.astype(np.float64)))
    exact = e / (1 + e) ** 2
    first = mv.grad(lambda t: mv.sigmoid(t).sum())(x)
    np.testing.assert_allclose(first.data, exact, rtol=rtol, atol=0)
    second = mv.grad(lambda t: mv.grad(lambda u: mv.softplus(u).sum())(t).sum())(x)
    np.testing.assert_allclose(second.data, exact, rtol=rtol, atol=0)
    second = mv.grad(lambda t: mv.grad(lambda u: mv.log_sigmoid(u).sum())(t).sum())(x)
    np.testing.assert_allclose(second.data, -exact, rtol=rtol, atol=0)
