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
