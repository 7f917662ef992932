"""Higher-order gradients: create_graph, the functional API (grad, value_and_grad, vjp, hvp,
jacobian) on closed forms, second derivatives of every primitive against central differences of
the first derivative and against PyTorch's double backward."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minivae as mv
from minivae import testing as mvt
from test_engine_gradients import CASES


# ---------------------------------------------------------------- the functional API on closed forms
def test_derivatives_of_tanh_up_to_the_third_match_their_closed_forms():
    x = np.linspace(-2.0, 2.0, 9)
    t = np.tanh(x)
    f = lambda z: mv.tanh(z).sum()  # noqa: E731
    d1 = mv.grad(f)                           # elementwise: the sum of derivatives has them as its gradient
    d2 = mv.grad(lambda z: d1(z).sum())
    d3 = mv.grad(lambda z: d2(z).sum())
    assert mv.grad(mv.grad(mv.grad(mv.tanh)))(np.array(0.5)).item() == pytest.approx(
        -2 * (1 - np.tanh(0.5) ** 2) * (1 - 3 * np.tanh(0.5) ** 2), rel=1e-12)
    np.testing.assert_allclose(d1(x).data, 1 - t ** 2, rtol=1e-12)
    np.testing.assert_allclose(d2(x).data, -2 * t * (1 - t ** 2), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(d3(x).data, -2 * (1 - t ** 2) * (1 - 3 * t ** 2), rtol=1e-11, atol=1e-15)


def test_grad_of_a_polynomial_and_value_and_grad_with_several_arguments():
    f = lambda x, y: (x ** 3 * y + 2.0 * y ** 2).sum()  # noqa: E731
    x, y = np.array([1.0, -2.0]), np.array([0.5, 3.0])
    value, (gx, gy) = mv.value_and_grad(f, argnums=(0, 1))(x, y)
    assert value.item() == pytest.approx(np.sum(x ** 3 * y + 2 * y ** 2))
    np.testing.assert_allclose(gx.data, 3 * x ** 2 * y)
    np.testing.assert_allclose(gy.data, x ** 3 + 4 * y)
    np.testing.assert_allclose(mv.grad(f, argnums=1)(x, y).data, x ** 3 + 4 * y)
    np.testing.assert_allclose(mv.grad(mv.grad(f))(np.array(2.0), np.array(1.0)).data, 12.0)


def test_hvp_of_a_quadratic_form_is_the_symmetric_part_times_v():
    rng = np.random.default_rng(0)
    a, x, v = rng.standard_normal((4, 4)), rng.standard_normal(4), rng.standard_normal(4)
    f = lambda z: (z.reshape(1, 4) @ mv.Tensor(a) @ z.reshape(4, 1)).sum()  # noqa: E731
    np.testing.assert_allclose(mv.hvp(f, x, v).data, (a + a.T) @ v, rtol=1e-12)
    # the Hessian of log-sum-exp: diag(p) - p pᵀ, p = softmax(x)
    p = np.exp(x - np.log(np.exp(x).sum()))
    np.testing.assert_allclose(mv.hvp(mv.logsumexp, x, v).data, (np.diag(p) - np.outer(p, p)) @ v, rtol=1e-12)


def test_jacobian_of_elementwise_and_matrix_functions():
    x = np.array([0.3, -1.0, 2.0])
    np.testing.assert_allclose(mv.jacobian(mv.exp)(x).data, np.diag(np.exp(x)))
    w = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(mv.jacobian(lambda z: mv.Tensor(w) @ z.reshape(3, 1))(x).data.reshape(2, 3), w)
    j = mv.jacobian(lambda z: z.softmax())(x).data
    p = np.exp(x) / np.exp(x).sum()
    np.testing.assert_allclose(j, np.diag(p) - np.outer(p, p), rtol=1e-12, atol=1e-15)


def test_vjp_returns_the_value_and_a_function_of_the_cotangent():
    x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    out, vjp_fn = mv.vjp(lambda a, b: a * b, x, y)
    np.testing.assert_array_equal(out.data, x * y)
    gx, gy = vjp_fn(np.array([1.0, 10.0]))
    np.testing.assert_array_equal(gx.data, [3.0, 40.0])
    np.testing.assert_array_equal(gy.data, [1.0, 20.0])


def test_grad_works_inside_no_grad_and_records_nothing_there():
    with mv.no_grad():
        g = mv.grad(lambda z: (z * z).sum())(np.array([1.0, 2.0]))
    np.testing.assert_array_equal(g.data, [2.0, 4.0])
    assert not g.requires_grad


def test_grad_errors_are_clear():
    with pytest.raises(TypeError, match="grad: f must return a one-element Tensor, got \\(2,\\)"):
        mv.grad(lambda z: z * 2)(np.ones(2))
    with pytest.raises(ValueError, match="argnums 3 out of range for 1 argument"):
        mv.grad(lambda z: z.sum(), argnums=3)(np.ones(2))
    with pytest.raises(TypeError, match="argument 0 must be floating-point"):
        mv.grad(lambda z: z.sum())(np.ones(2, int))


def test_an_input_the_output_does_not_reach_gets_zeros():
    g = mv.grad(lambda a, b: (a * 2).sum(), argnums=(0, 1))(np.ones(2), np.ones(3))
    np.testing.assert_array_equal(g[1].data, np.zeros(3))


# ---------------------------------------------------------------- create_graph on Tensor.backward
def test_backward_with_create_graph_leaves_differentiable_gradients():
    x = mv.Tensor(np.array([0.5, -1.5]), requires_grad=True)
    (x ** 3).sum().backward(create_graph=True)
    assert isinstance(x.grad, mv.Tensor) and x.grad.requires_grad
    np.testing.assert_allclose(x.grad.data, 3 * x.data ** 2)
    first = x.grad
    x.grad = None
    first.sum().backward()
    np.testing.assert_allclose(x.grad, 6 * x.data)


def test_backward_without_create_graph_records_nothing_and_leaves_arrays():
    x = mv.Tensor(np.array([0.5, -1.5]), requires_grad=True)
    (x.exp() * x).sum().backward()
    assert type(x.grad) is np.ndarray


# ---------------------------------------------------------------- second derivatives of every primitive
def second_order_check(fn, inputs, seed=0):
    """gradcheck of x ↦ Σ_i wᵢ · ∂(v · fn(x))/∂xᵢ: the engine's second derivatives against central
    differences of its first derivatives, for random v and wᵢ."""
    rng = np.random.default_rng(seed)
    positions = [i for i, x in enumerate(inputs) if isinstance(x, mv.Tensor) and x.requires_grad]
    v = rng.standard_normal(fn(*inputs).shape)
    w = [rng.standard_normal(inputs[i].shape) for i in positions]

    def with_inputs(xs):
        args = list(inputs)
        for i, x in zip(positions, xs):
            args[i] = x
        return args

    def directional_first_derivative(*xs):
        grads = mv.grad(lambda *ys: (fn(*with_inputs(ys)) * v).sum(), argnums=tuple(range(len(xs))))(*xs)
        total = 0.0
        for g, wi in zip(grads, w):
            total = total + (g * wi).sum()
        return total

    return mv.gradcheck(directional_first_derivative, *[inputs[i] for i in positions])


@pytest.mark.parametrize("name", CASES)
@given(data=st.data())
def test_second_derivative_of_every_op_matches_central_differences(name, data):
    fn, inputs = data.draw(CASES[name](np.float64))
    assert second_order_check(fn, inputs)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(x=mvt.tensors(mvt.float_arrays(mvt.shapes(min_dims=1), np.float64)), data=st.data())
def test_softmax_and_log_softmax_first_and_second_derivatives(name, x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    fn = lambda t: getattr(mv, name)(t, axis=axis)  # noqa: E731
    assert mv.gradcheck(fn, x)
    assert second_order_check(fn, [x])


def test_softmax_is_stable_and_sums_to_one():
    x = mv.Tensor(np.array([[1000.0, 0.0, -1000.0], [3.0, 3.0, 3.0]]), requires_grad=True)
    p = x.softmax(axis=1)
    np.testing.assert_allclose(p.data.sum(axis=1), 1.0)
    np.testing.assert_allclose(x.log_softmax(axis=1).data[0], [0.0, -1000.0, -2000.0])
    p[:, 0].sum().backward()
    assert np.isfinite(x.grad).all()


# ---------------------------------------------------------------- powers at a zero base
def test_powers_at_a_zero_base_have_their_finite_gradients():
    x = mv.Tensor(np.array(0.0), requires_grad=True)
    (x ** 0.0).backward()
    assert x.grad == 0.0  # d/dx x⁰ = 0, not 0·∞

    y = mv.Tensor(np.array(2.0), requires_grad=True)
    (mv.Tensor(0.0) ** y).backward()
    assert y.grad == 0.0  # d/dy 0^y = 0 for y > 0, not 0·log 0

    t = mv.Tensor(np.array(0.0), requires_grad=True)
    (1 * t ** 0 + 2 * t ** 1 + 3 * t ** 2).backward()
    assert t.grad == 2.0
    # second derivative of the polynomial at 0: 6
    assert mv.grad(mv.grad(lambda s: 1 * s ** 0 + 2 * s ** 1 + 3 * s ** 2))(np.array(0.0)).item() == 6.0


def test_power_gradient_stays_infinite_where_it_truly_is():
    x = mv.Tensor(np.array(0.0), requires_grad=True)
    (x ** 0.5).backward()
    assert x.grad == np.inf


# ---------------------------------------------------------------- against PyTorch's double backward
torch = None


def torch_cases():
    """(minivae function, the same function in PyTorch, input arrays), every primitive and composite."""
    rng = np.random.default_rng(7)
    n = lambda *shape: rng.standard_normal(shape)  # noqa: E731
    pos = lambda *shape: rng.uniform(0.5, 2.0, shape)  # noqa: E731
    cond = rng.random((3, 4)) > 0.5
    idx = np.array([0, 2, 2, 1])
    t = lambda name: getattr(torch, name)  # noqa: E731
    return {
        "add": (mv.add, t("add"), [n(3, 4), n(4)]),
        "sub": (mv.sub, t("sub"), [n(3, 4), n(3, 1)]),
        "mul": (mv.mul, t("mul"), [n(3, 4), n(3, 4)]),
        "div": (mv.div, t("div"), [n(3, 4), pos(3, 4)]),
        "pow": (mv.pow, t("pow"), [pos(3, 4), n(3, 4)]),
        "neg": (mv.neg, t("neg"), [n(3, 4)]),
        "matmul": (mv.matmul, t("matmul"), [n(2, 3, 4), n(4, 5)]),
        "linear": (mv.linear, torch.nn.functional.linear, [n(3, 4), n(5, 4), n(5)]),
        "exp": (mv.exp, t("exp"), [n(3, 4)]),
        "log": (mv.log, t("log"), [pos(3, 4)]),
        "log1p": (mv.log1p, t("log1p"), [pos(3, 4)]),
        "sqrt": (mv.sqrt, t("sqrt"), [pos(3, 4)]),
        "abs": (mv.abs, t("abs"), [n(3, 4)]),
        "maximum": (mv.maximum, t("maximum"), [n(3, 4), n(3, 4)]),
        "minimum": (mv.minimum, t("minimum"), [n(3, 4), n(3, 4)]),
        "where": (lambda a, b: mv.where(cond, a, b), lambda a, b: torch.where(torch.tensor(cond), a, b),
                  [n(3, 4), n(3, 4)]),
        "relu": (mv.relu, t("relu"), [n(3, 4)]),
        "tanh": (mv.tanh, t("tanh"), [n(3, 4)]),
        "sigmoid": (mv.sigmoid, t("sigmoid"), [n(3, 4)]),
        "softplus": (mv.softplus, torch.nn.functional.softplus, [n(3, 4)]),
        "log_sigmoid": (mv.log_sigmoid, torch.nn.functional.logsigmoid, [n(3, 4)]),
        "sum": (lambda a: mv.sum(a, axis=1), lambda a: a.sum(dim=1), [n(3, 4)]),
        "mean": (lambda a: mv.mean(a, axis=0, keepdims=True), lambda a: a.mean(dim=0, keepdim=True), [n(3, 4)]),
        "max": (lambda a: mv.max(a, axis=1), lambda a: a.amax(dim=1), [n(3, 4)]),
        "logsumexp": (lambda a: mv.logsumexp(a, axis=1), lambda a: torch.logsumexp(a, dim=1), [n(3, 4)]),
        "softmax": (lambda a: mv.softmax(a, axis=0), lambda a: torch.softmax(a, dim=0), [n(3, 4)]),
        "log_softmax": (lambda a: mv.log_softmax(a), lambda a: torch.log_softmax(a, dim=-1), [n(3, 4)]),
        "broadcast_to": (lambda a: mv.broadcast_to(a, shape=(2, 3, 4)), lambda a: a.expand(2, 3, 4), [n(3, 1)]),
        "sum_to": (lambda a: mv.sum_to(a, shape=(3, 1)), lambda a: a.sum_to_size(3, 1), [n(2, 3, 4)]),
        "reshape": (lambda a: mv.reshape(a, shape=(4, 3)), lambda a: a.reshape(4, 3), [n(3, 4)]),
        "transpose": (lambda a: mv.transpose(a, axes=(2, 0, 1)), lambda a: a.permute(2, 0, 1), [n(2, 3, 4)]),
        "getitem": (lambda a: a[idx, 1:], lambda a: a[torch.tensor(idx), 1:], [n(3, 4)]),
        "scatter_add": (lambda a: mv.scatter_add(a, index=(idx,), shape=(3, 2)),
                        lambda a: torch.zeros(3, 2, dtype=a.dtype).index_put((torch.tensor(idx),), a,
                                                                             accumulate=True), [n(4, 2)]),
        "concatenate": (lambda a, b: mv.concatenate([a, b], axis=1), lambda a, b: torch.cat([a, b], dim=1),
                        [n(3, 2), n(3, 4)]),
        "stack": (lambda a, b: mv.stack([a, b], axis=-1), lambda a, b: torch.stack([a, b], dim=-1),
                  [n(3, 4), n(3, 4)]),
        "binary_cross_entropy_with_logits": (
            lambda z, y: mv.binary_cross_entropy_with_logits(z, y, reduction="sum"),
            lambda z, y: torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum"),
            [n(3, 4), rng.random((3, 4))]),
    }


def second_derivatives_minivae(fn, arrays, v, w):
    xs = [mv.Tensor(a, requires_grad=True) for a in arrays]
    grads = mv.gradients((fn(*xs) * v).sum(), xs, create_graph=True)
    total = sum(((g * wi).sum() for g, wi in zip(grads, w)), mv.Tensor(0.0))
    return [g.data for g in mv.gradients(total, xs)]


def second_derivatives_torch(fn, arrays, v, w):
    xs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*xs)
    grads = torch.autograd.grad((out * torch.tensor(v)).sum(), xs, create_graph=True)
    total = sum((g * torch.tensor(wi)).sum() for g, wi in zip(grads, w))
    if not total.requires_grad:  # the first derivatives do not depend on the inputs
        return [np.zeros(a.shape) for a in arrays]
    return [g.detach().numpy(force=True) for g in
            torch.autograd.grad(total, xs, allow_unused=True, materialize_grads=True)]


PRIMITIVES = ["add", "sub", "mul", "div", "pow", "neg", "matmul", "linear", "exp", "log", "log1p", "sqrt", "abs",
              "maximum", "minimum", "where", "relu", "tanh", "sigmoid", "softplus", "log_sigmoid", "sum", "mean",
              "max", "logsumexp", "softmax", "log_softmax", "broadcast_to", "sum_to", "reshape", "transpose",
              "getitem", "scatter_add", "concatenate", "stack", "binary_cross_entropy_with_logits"]


@pytest.mark.parametrize("name", PRIMITIVES)
def test_second_derivatives_match_pytorch_double_backward(name):
    global torch
    torch = pytest.importorskip("torch")
    fn, torch_fn, arrays = torch_cases()[name]
    rng = np.random.default_rng(1)
    v = rng.standard_normal(fn(*[mv.Tensor(a) for a in arrays]).shape)
    w = [rng.standard_normal(a.shape) for a in arrays]
    ours = second_derivatives_minivae(fn, arrays, v, w)
    theirs = second_derivatives_torch(torch_fn, arrays, v, w)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_the_pytorch_table_covers_every_primitive_of_the_engine():
    from minivae.engine import ops
    primitives = {value.name for value in vars(ops).values() if isinstance(value, ops.Op)}
    covered = {name.strip("_") for name in PRIMITIVES} | {"sign"}  # sign: zero derivative everywhere
    covered |= {"less", "less_equal", "greater", "greater_equal", "equal", "not_equal"}  # booleans: no gradient
    covered |= {"max_shift"}  # softmax's shift: no gradient, by definition
    assert primitives <= covered | {"getitem", "concatenate", "stack"}, primitives - covered


# ---------------------------------------------------------------- argnums and keyword arguments, as in JAX
@pytest.mark.parametrize("argnums", [[0, 1], (0, 1), np.array([0, 1])])
def test_argnums_may_be_any_sequence_of_ints_and_gives_a_tuple(argnums):
    f = lambda x, y: (x * y * y).sum()  # noqa: E731
    x, y = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    gx, gy = mv.grad(f, argnums=argnums)(x, y)
    np.testing.assert_array_equal(gx.data, y * y)
    np.testing.assert_array_equal(gy.data, 2 * x * y)
    value, (gx, gy) = mv.value_and_grad(f, argnums=argnums)(x, y)
    assert value.item() == 11.0
    jx, jy = mv.jacobian(lambda x, y: x * y, argnums=argnums)(x, y)
    np.testing.assert_array_equal(jx.data, np.diag(y))
    np.testing.assert_array_equal(jy.data, np.diag(x))


@pytest.mark.parametrize("argnum", [np.int64(1), np.int32(-1)])
def test_a_numpy_integer_argnum_is_one_position(argnum):
    f = lambda x, y: (x * y * y).sum()  # noqa: E731
    x, y = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    np.testing.assert_array_equal(mv.grad(f, argnums=argnum)(x, y).data, 2 * x * y)
    np.testing.assert_array_equal(mv.jacobian(lambda x, y: x * y, argnums=argnum)(x, y).data, np.diag(x))


@pytest.mark.parametrize("argnums", ["0", 1.0, True, [0, 1.5], None])
def test_argnums_that_are_not_ints_are_a_clear_type_error(argnums):
    with pytest.raises(TypeError, match="grad: argnums must be an int or a sequence of ints, got"):
        mv.grad(lambda x: x.sum(), argnums=argnums)


def test_keyword_arguments_pass_through_undifferentiated():
    f = lambda x, scale=1.0, power=2: (scale * x ** power).sum()  # noqa: E731
    x = np.array([1.0, -2.0])
    np.testing.assert_array_equal(mv.grad(f)(x, scale=2.0).data, 4 * x)
    value, g = mv.value_and_grad(f)(x, scale=3.0, power=3)
    assert value.item() == 3 * np.sum(x ** 3)
    np.testing.assert_array_equal(g.data, 9 * x ** 2)
    np.testing.assert_array_equal(mv.grad(mv.grad(lambda x, scale: scale * x ** 3))(np.array(2.0), scale=0.5).data,
                                  6.0)
    np.testing.assert_array_equal(mv.jacobian(lambda x, scale: scale * x)(x, scale=2.0).data, 2 * np.eye(2))
    np.testing.assert_array_equal(mv.hvp(f, x, np.array([1.0, 0.0]), scale=2.0).data, [4.0, 0.0])
    out, vjp_fn = mv.vjp(lambda x, scale: scale * x, x, scale=5.0)
    np.testing.assert_array_equal(out.data, 5 * x)
    np.testing.assert_array_equal(vjp_fn(np.ones(2))[0].data, [5.0, 5.0])


def test_hessian_takes_argnums_and_keyword_arguments_as_grad_does():
    f = lambda x, y, scale=1.0: (scale * x * x * y).sum()  # noqa: E731
    x, y = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    np.testing.assert_array_equal(mv.hessian(f)(x, y, scale=2.0).data, np.diag(4 * y))
    (hxx, hxy), (hyx, hyy) = mv.hessian(f, argnums=[0, 1])(x, y, scale=2.0)
    np.testing.assert_array_equal(hxy.data, np.diag(4 * x))
    np.testing.assert_array_equal(hyy.data, np.zeros((2, 2)))
    np.testing.assert_array_equal(mv.hessian(f, argnums=np.int64(1))(x, y).data, np.zeros((2, 2)))
