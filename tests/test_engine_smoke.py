"""The engine's promise in the README, run as written."""
import numpy as np

import minivae as mv


def test_readme_example_gradients_match_central_differences():
    rng = np.random.default_rng(0)
    x = mv.Tensor(rng.standard_normal((8, 5)).astype(np.float32))
    w = mv.Tensor(rng.standard_normal((5, 3)).astype(np.float32) * 0.5, requires_grad=True)
    b = mv.Tensor(np.zeros(3, np.float32), requires_grad=True)
    loss = ((x @ w + b).relu() ** 2).mean()
    loss.backward()
    assert w.grad.shape == w.shape and w.grad.dtype == np.float32
    assert b.grad.shape == b.shape and b.grad.dtype == np.float32

    def f(bias):
        return (np.maximum(x.data.astype(np.float64) @ w.data.astype(np.float64) + bias, 0) ** 2).mean()
    eps = 1e-6
    numeric = [(f(np.eye(3)[i] * eps) - f(-np.eye(3)[i] * eps)) / (2 * eps) for i in range(3)]
    np.testing.assert_allclose(b.grad, numeric, rtol=1e-4, atol=1e-6)
