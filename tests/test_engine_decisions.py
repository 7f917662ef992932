"""What the engine decides where the mathematics leaves a choice, and what it refuses: a backward that
leaves the graph under create_graph, gradients of another dtype, 0 ** y at y = 0, a second backward."""
import numpy as np
import pytest

import minivae as mv


def softsign_with(backward):
    """softsign(x) = x / (1 + |x|) with the given backward ``backward(ctx, g)``."""
    @mv.primitive
    def softsign(x):
        return x / (1 + np.abs(x))
    softsign.defvjp(backward)
    return softsign


# the backward that docs/gradient-testing.md taught: np.abs turns the Tensor x into an array under create_graph
numpy_backward = softsign_with(lambda ctx, g: (g / (1 + np.abs(ctx.inputs[0])) ** 2,))
engine_backward = softsign_with(lambda ctx, g: (g / (1 + mv.abs(ctx.inputs[0])) ** 2,))


def test_a_backward_written_with_the_engines_ops_differentiates_again():
    assert mv.grad(engine_backward)(np.array(0.7)).item() == pytest.approx(1 / 1.7 ** 2, rel=1e-14)
    assert mv.grad(mv.grad(engine_backward))(np.array(0.7)).item() == pytest.approx(-2 / 1.7 ** 3, rel=1e-14)
    assert mv.gradcheck(engine_backward, np.array([0.7, -0.3, 2.0]), order=2)


def test_a_backward_that_leaves_the_graph_gives_its_first_derivative_and_refuses_a_second():
    """grad(grad(softsign))(0.7) was 0 (exact −0.407), silently: now an error naming the op."""
    assert mv.grad(numpy_backward)(np.array(0.7)).item() == pytest.approx(1 / 1.7 ** 2, rel=1e-14)
    with pytest.raises(RuntimeError, match=r"^softsign: its backward turned a Tensor that requires grad into an "
                                           r"ndarray .* cannot be differentiated again"):
        mv.grad(mv.grad(numpy_backward))(np.array(0.7))
    x = mv.Tensor(np.array([0.7, -0.3]), requires_grad=True)
    numpy_backward(x).sum().backward(create_graph=True)
    np.testing.assert_allclose(x.grad.data, 1 / (1 + np.abs(x.data)) ** 2)
    first, x.grad = x.grad, None
    with pytest.raises(RuntimeError, match="^softsign: its backward"):
        first.sum().backward()
    with pytest.raises(RuntimeError, match="^softsign: its backward"):
        mv.gradcheck(numpy_backward, np.array([0.7, -0.3]), order=2)
    x.grad = None
    numpy_backward(x).sum().backward()  # a plain backward runs on arrays: nothing to refuse
    np.testing.assert_allclose(x.grad, 1 / (1 + np.abs(x.data)) ** 2)


@pytest.mark.parametrize("backward, how", [
    (lambda ctx, g: (g.data / (1 + np.abs(ctx.inputs[0].data)) ** 2,), "returned an ndarray"),
    (lambda ctx, g: (mv.Tensor(g.data / (1 + np.abs(ctx.inputs[0].data)) ** 2),),
     "returned a Tensor outside the graph"),
    (lambda ctx, g: (g / (1 + np.sum(np.abs(ctx.inputs[0]))) ** 2,),
     "turned a Tensor that requires grad into an ndarray"),
    (lambda ctx, g: (g / (1 + abs(float(ctx.inputs[0]))) ** 2,), r"turned .* into a Python number \(float\(\)\)"),
    (lambda ctx, g: (g / (1 + abs(ctx.inputs[0].item())) ** 2,), r"turned .* into a Python number \(\.item\(\)\)"),
])
def test_every_way_out_of_the_graph_is_caught_where_it_matters(backward, how):
    """Through .data (when nothing of the graph is left in the gradient: .data on g alone, with x kept,
    cannot be told from a right backward), a Tensor rebuilt from an array, NumPy functions and
    Python numbers. In d/ds of
    d/du [softsign(u)·u] at u = s, the gradient reaching softsign's backward is u itself (it requires
    grad), so every one of these loses a term."""
    softsign = softsign_with(backward)
    with pytest.raises(RuntimeError, match=f"^softsign: its backward {how}"):
        mv.grad(lambda s: mv.grad(lambda u: softsign(u) * u)(s))(np.array(0.7))
    exact = softsign_with(lambda ctx, g: (g / (1 + mv.abs(ctx.inputs[0])) ** 2,))
    second = mv.grad(lambda s: mv.grad(lambda u: exact(u) * u)(s))(np.array(0.7)).item()
    assert second == pytest.approx(2 / 1.7 ** 2 - 2 * 0.7 / 1.7 ** 3, rel=1e-14)  # 2 f'(u) + u f''(u)


def test_a_linear_backward_on_a_constant_seed_is_not_a_way_out():
    """add's backward hands g on as it is: a gradient that does not depend on x is right for a linear op."""
    assert mv.grad(mv.grad(lambda s: (s + 3.0) * 2.0))(np.array(1.0)).item() == 0.0
    assert mv.hvp(lambda s: ((s + 1.0) ** 3).sum(), np.array([1.0, 2.0]), np.ones(2)).data.tolist() == [12.0, 18.0]


# ---------------------------------------------------------------- the dtype of a gradient
@pytest.mark.parametrize("create_graph", [False, True])
def test_a_backward_returning_float64_for_a_float32_argument_is_an_error_at_the_op(create_graph):
    """It was kept as float64, and then Adam refused the parameter's gradient; PyTorch casts back. Here:
    an error naming the op, the argument and both dtypes, whichever pass runs."""
    @mv.primitive
    def widen(x):
        return 2 * x

    widen.defvjp(lambda ctx, g: (np.asarray(mv.engine.ops.value(g), np.float64) * 2.0,))
    x = mv.Tensor(np.ones(3, np.float32), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"^widen: its backward returned a float64 gradient for argument 0, which "
                                           r"is float32; a gradient has its argument's dtype"):
        widen(x).sum().backward(create_graph=create_graph)
    assert x.grad is None


def test_every_float32_op_of_a_vae_step_keeps_float32_gradients():
    model = mv.VAE(input_dim=6, hidden=(5,), latent_dim=2, rng=0)
    x = (np.random.default_rng(0).uniform(size=(3, 6)) > 0.5).astype(np.float32)
    model.negative_elbo(x, np.random.default_rng(1), samples=2).backward()
    assert {p.grad.dtype for p in model.parameters()} == {np.dtype(np.float32)}


# ---------------------------------------------------------------- 0 ** y at y = 0
def test_the_gradient_of_zero_to_the_power_y_at_y_0_is_0_as_in_pytorch_and_jax():
    """∂/∂y 0^y at y = 0 was −∞ (x^y·log x = 1·log 0): an infinite gradient poisons a whole step."""
    y = mv.Tensor(np.array([0.0, 2.0, -1.0]), requires_grad=True)
    with np.errstate(divide="ignore"):  # 0 ** -1 = ∞, and its slope
        (mv.Tensor(np.zeros(3)) ** y).sum().backward()
    assert y.grad.tolist() == [0.0, 0.0, -np.inf]  # y < 0: 0^y = ∞, and so is the slope
    assert mv.grad(mv.grad(lambda t: (mv.Tensor(0.0) ** t)))(np.array(0.0)).item() == 0.0
    torch = pytest.importorskip("torch")
    t = torch.tensor([0.0, 2.0, -1.0], dtype=torch.float64, requires_grad=True)  # JAX agrees
    (torch.zeros(3, dtype=torch.float64) ** t).sum().backward()
    assert t.grad.tolist() == y.grad.tolist()


# ---------------------------------------------------------------- a second backward on the same graph
def test_a_second_backward_on_the_same_graph_accumulates_as_documented():
    """The graph keeps what its backward needs (as PyTorch's retain_graph=True), so a second backward adds
    the same gradient again; zero_grad (or .grad = None) in between starts afresh."""
    x = mv.Tensor(np.array([1.0, -2.0]), requires_grad=True)
    loss = (x * x * x).sum()
    loss.backward()
    loss.backward()
    np.testing.assert_array_equal(x.grad, 2 * 3 * x.data ** 2)
    x.zero_grad()
    loss.backward()
    np.testing.assert_array_equal(x.grad, 3 * x.data ** 2)
    assert "second backward on the same graph is allowed and adds the same gradients again" in " ".join(
        mv.Tensor.backward.__doc__.split())
