"""The model's functions: each fused implementation against the composition it implements (values
and gradients, float32 and float64, broadcasting, every memory layout, empty batches, extreme
inputs), higher derivatives through both, the graph a reader sees on each backend, and the faults
found in the fused layers, each with its right value."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minivae as mv
from minivae import functions, kernels
from minivae import testing as mvt
from minivae.engine import ops
from minivae.kernels import fused

FUSED = [functions.linear, functions.linear_relu, functions.bernoulli_log_prob, functions.gaussian_rsample,
         functions.kl_to_standard_normal]


# ------------------------------------------------------------------------ layouts
def layouts(array: np.ndarray, kind: str) -> np.ndarray:
    """The same values in another memory layout: C order, Fortran order, a view with permuted axes,
    negative strides, or a broadcast view (zero strides along a leading axis)."""
    if kind == "C" or array.ndim == 0:
        return np.ascontiguousarray(array)
    if kind == "F":
        return np.asfortranarray(array)
    if kind == "permuted":
        axes = tuple(range(array.ndim))[::-1]
        return np.ascontiguousarray(np.transpose(array, axes)).transpose(np.argsort(axes))
    if kind == "reversed":
        return np.ascontiguousarray(array[::-1])[::-1]
    if kind == "broadcast" and array.shape and array.shape[0] > 0:
        return np.broadcast_to(array[:1], array.shape) if (array == array[:1]).all() else array
    return array


LAYOUTS = ["C", "F", "permuted", "reversed", "broadcast"]


@st.composite
def cases(draw, function=None, allow_extremes=True):
    """(function, input arrays in drawn dtype, shapes and layouts) for a function with a fused implementation;
    now and then some elements are extreme (logits ±1e4, logvar ±50)."""
    function = draw(st.sampled_from(FUSED)) if function is None else function
    extremes = allow_extremes and draw(st.booleans())
    dtype = draw(mvt.float_dtypes())
    batch = draw(mvt.shapes(min_dims=0, max_dims=2, max_side=4))
    d, n_out = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    samples = draw(st.sampled_from([(), (1,), (3,)]))
    layout = lambda a: layouts(a, draw(st.sampled_from(LAYOUTS)))  # noqa: E731

    def array(shape, low=-3.0, high=3.0, big=()):
        values = draw(mvt.float_arrays(shape, dtype, low, high))
        if extremes and big and values.size:
            mask = draw(mvt.float_arrays(shape, np.float64, 0.0, 1.0)) < 0.3
            values = np.where(mask, np.asarray(draw(st.sampled_from(big)), dtype), values).astype(dtype)
        return layout(values)

    if function in (functions.linear, functions.linear_relu):
        x = layout(draw(mvt.nonzero_arrays((*batch, d), dtype)))
        return function, [x, array((n_out, d)), array((n_out,))]
    if function is functions.bernoulli_log_prob:
        logits = array((*samples, *batch, d), -8, 8, big=(1e4, -1e4))
        return function, [logits, array((*batch, d), 0, 1)]
    if function is functions.gaussian_rsample:
        return function, [array((*batch, d)), array((*batch, d), big=(50.0, -50.0)), array((*samples, *batch, d))]
    return function, [array((*batch, d)), array((*batch, d), big=(50.0, -50.0))]


def values_and_gradients(fn, arrays, seed=0):
    tensors = [mv.Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    cotangent = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    (out * cotangent).sum().backward()
    return out, [t.grad for t in tensors]


def assert_close(actual, expected, dtype, scale=1.0):
    rtol = 2e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


# ------------------------------------------------------------------------ fused against composite
@given(cases())
def test_every_fused_implementation_equals_its_composition_in_value_and_gradient(case):
    function, arrays = case
    with kernels.use("numba"):
        value, grads = values_and_gradients(function, arrays)
        assert value.op is function.implementation
    with kernels.use("reference"):
        expected, expected_grads = values_and_gradients(function, arrays)
    assert value.dtype == arrays[0].dtype and value.shape == expected.shape
    assert_close(value.data, expected.data, value.dtype, 1 + np.abs(expected.data).max(initial=0))
    for grad, expected_grad, array in zip(grads, expected_grads, arrays):
        assert grad.dtype == array.dtype and grad.shape == array.shape
        assert_close(grad, expected_grad, grad.dtype, 1 + np.abs(expected_grad).max(initial=0))


@given(cases(allow_extremes=False))  # at ±1e4 or e^25, a central difference of step 1e-6 loses every digit
def test_fused_gradients_match_central_differences(case):
    function, arrays = case
    arrays = [a.astype(np.float64) for a in arrays]
    if function is functions.linear_relu:  # away from ReLU's kink, where the central difference straddles it
        x, w, b = arrays
        assume(np.abs(x @ w.T + b).min(initial=1.0) > 1e-3)
    if function is functions.bernoulli_log_prob:  # inside [0, 1], so that t ± ε stays in the domain
        arrays[1] = 0.01 + 0.98 * arrays[1]
    with kernels.use("numba"):
        assert mv.gradcheck(function, *arrays)


@pytest.mark.parametrize("function", FUSED, ids=lambda f: f.name)
@given(data=st.data())
def test_second_derivatives_through_a_fused_node_are_those_of_the_composition(function, data):
    _, arrays = data.draw(cases(function, allow_extremes=False))
    arrays = [a.astype(np.float64) for a in arrays]
    if function is functions.bernoulli_log_prob:
        arrays[1] = np.clip(arrays[1], 0.0, 1.0)
    rng = np.random.default_rng(0)
    results = {}
    for backend in ("numba", "reference"):
        with kernels.use(backend):
            xs = [mv.Tensor(a, requires_grad=True) for a in arrays]
            out = mv.tanh(function(*xs))  # a fused node below another op: its output gradient depends on xs
            v = rng.standard_normal(out.shape) if backend == "numba" else results["v"]
            results["v"] = v
            grads = mv.gradients((out * v).sum(), xs, create_graph=True)
            total = sum(((g * g).sum() for g in grads), mv.Tensor(0.0))
            results[backend] = [g.data for g in mv.gradients(total, xs)]
    for a, b in zip(results["numba"], results["reference"]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_an_empty_batch_gives_empty_results(backend):
    empty = np.zeros((0, 3), np.float32)
    with kernels.use(backend):
        assert functions.gaussian_rsample(empty, empty, np.zeros((2, 0, 3), np.float32)).shape == (2, 0, 3)
        assert functions.kl_to_standard_normal(empty, empty).shape == (0,)
        assert functions.bernoulli_log_prob(np.zeros((2, 0, 3), np.float32), empty).shape == (2, 0)
        w = mv.Tensor(np.ones((4, 3), np.float32), requires_grad=True)
        out = functions.linear_relu(mv.Tensor(empty), w, np.zeros(4, np.float32))
        assert out.shape == (0, 4)
        out.sum().backward()
        np.testing.assert_array_equal(w.grad, np.zeros((4, 3)))


def test_the_vae_loss_and_gradients_are_the_same_on_both_backends():
    x = (np.random.default_rng(1).random((16, 12)) < 0.3).astype(np.float64)
    model = mv.VAE(12, (8,), 3, rng=0, dtype=np.float64)
    results = {}
    for backend in kernels.BACKENDS:
        model.zero_grad()
        with kernels.use(backend):
            loss = model.negative_elbo(x, np.random.default_rng(2), samples=3)
            loss.backward()
        results[backend] = loss.item(), {name: p.grad.copy() for name, p in model.named_parameters()}
    assert results["numba"][0] == pytest.approx(results["reference"][0], rel=1e-12)
    for name, grad in results["numba"][1].items():
        np.testing.assert_allclose(grad, results["reference"][1][name], rtol=1e-10, atol=1e-12, err_msg=name)


# ------------------------------------------------------------------------ the graph a reader sees
def vae_loss_graph(backend):
    model = mv.VAE(784, (16,), 2, rng=0)
    x = np.random.default_rng(0).random((4, 784)).astype(np.float32)
    with kernels.use(backend):
        return model.negative_elbo(x, np.random.default_rng(0))


def test_on_the_reference_backend_the_vae_loss_is_made_of_primitives_only():
    loss = vae_loss_graph("reference")
    primitives = {value for value in vars(ops).values() if isinstance(value, ops.Op)}
    nodes = mv.engine.graph.topological_order(loss)
    used = {node.op for node in nodes if node.op is not None}
    assert used and used <= primitives, {op.name for op in used - primitives}
    listing = mv.format_graph(loss)
    assert "matmul" in listing and "softplus" in listing and "exp" in listing


def test_on_the_fast_backend_each_fused_node_is_named_after_its_function():
    counts = mv.op_counts(vae_loss_graph("numba"))
    assert counts["linear_relu"] == 2 and counts["linear"] == 3  # encoder and decoder hidden layers; 3 heads
    assert counts["bernoulli_log_prob"] == 1 and counts["gaussian_rsample"] == 1
    assert counts["kl_to_standard_normal"] == 1
    for name in counts:
        assert name in {f.name for f in FUSED} or isinstance(getattr(ops, name, getattr(ops, "_" + name, None)),
                                                             ops.Op), name


def test_sequential_calls_every_module():
    calls = []

    class Spy(mv.nn.Module):
        def __init__(self, module):
            self.module = module

        def forward(self, x):
            calls.append(type(self.module).__name__)
            return self.module(x)

    net = mv.nn.Sequential(Spy(mv.nn.Linear(3, 4, rng=0)), Spy(mv.nn.ReLU()), Spy(mv.nn.Linear(4, 2, rng=0)))
    for backend in kernels.BACKENDS:
        calls.clear()
        with kernels.use(backend):
            net(np.ones((2, 3), np.float32))
        assert calls == ["Linear", "ReLU", "Linear"]


def test_a_relu_after_a_fused_linear_leaves_the_layer_output_usable():
    rng = np.random.default_rng(0)
    x = mv.Tensor(rng.standard_normal((5, 3)), requires_grad=True)
    w, b = (mv.Tensor(rng.standard_normal(s), requires_grad=True) for s in ((4, 3), (4,)))
    results = {}
    for backend in kernels.BACKENDS:
        for t in (x, w, b):
            t.grad = None
        with kernels.use(backend):
            h = functions.linear(x, w, b)
            before = h.data.copy()
            y = mv.nn.ReLU()(h)
            (y * 2 + h * 3).sum().backward()  # h used beside its ReLU
        np.testing.assert_array_equal(h.data, before)
        results[backend] = [t.grad.copy() for t in (x, w, b)]
    for a, b_ in zip(*results.values()):
        np.testing.assert_allclose(a, b_, rtol=1e-12)


# ------------------------------------------------------------------------ faults, each with its right value
@pytest.mark.parametrize("backend", kernels.BACKENDS)
@pytest.mark.parametrize("layout", ["permuted", "F", "reversed", "broadcast", "transposed (1, 0, 2, 3)"])
@pytest.mark.parametrize("activation", [False, True])
def test_a_linear_layer_keeps_its_bias_in_every_input_layout(backend, layout, activation):
    if layout == "transposed (1, 0, 2, 3)":
        x = np.zeros((2, 2, 2, 3)).transpose(1, 0, 2, 3)
    else:
        x = layouts(np.zeros((2, 2, 2, 3)), layout)
    layer = mv.nn.Linear(3, 1, rng=0, dtype=np.float64)
    layer.weight.data[:] = 0.0
    layer.bias.data[:] = 1.0
    with kernels.use(backend):
        h = layer(mv.Tensor(x))
        y = mv.nn.ReLU()(h) if activation else h
    np.testing.assert_array_equal(y.data, np.ones((2, 2, 2, 1)))


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_a_linear_layer_folds_leading_axes_into_one_2d_product(backend):
    x = mv.Tensor(np.random.default_rng(0).standard_normal((5, 7, 3)), requires_grad=True)
    w = mv.Tensor(np.ones((4, 3)), requires_grad=True)
    with kernels.use(backend):
        y = functions.linear(x, w, np.zeros(4))
    assert y.shape == (5, 7, 4)
    products = [node for node in mv.engine.graph.topological_order(y) if node.op is ops.matmul]
    assert all(node.ndim == 2 for node in products)
    np.testing.assert_allclose(y.data, x.data @ np.ones((3, 4)))


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_bernoulli_log_prob_with_logits_broadcast_along_the_summed_axis(backend):
    logits = mv.Tensor(np.array([0.3]), requires_grad=True)
    targets = mv.Tensor(np.array([0.0, 1.0]), requires_grad=True)
    with kernels.use(backend):
        out = functions.bernoulli_log_prob(logits, targets)
        out.backward()
    s = 1 / (1 + np.exp(-0.3))
    assert out.item() == pytest.approx(np.log(1 - s) + np.log(s))
    np.testing.assert_allclose(logits.grad, [(0 - s) + (1 - s)])
    np.testing.assert_allclose(targets.grad, [0.3, 0.3])


INFINITE_LOGITS = [  # (z, t, ℓ(z, t), ∂ℓ/∂z = σ(z) - t, ∂ℓ/∂t = -z but 0 where the term of weight 0 is dropped)
    (np.inf, 1.0, 0.0, 0.0, 0.0), (np.inf, 0.5, np.inf, 0.5, -np.inf), (np.inf, 0.0, np.inf, 1.0, -np.inf),
    (-np.inf, 0.0, 0.0, 0.0, 0.0), (-np.inf, 0.5, np.inf, -0.5, np.inf), (-np.inf, 1.0, np.inf, -1.0, np.inf),
    (100.0, 1.0, 0.0, 0.0, -100.0), (-100.0, 0.0, 0.0, 0.0, 100.0), (0.0, 0.25, np.log(2), 0.25, 0.0)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_binary_cross_entropy_with_logits_is_exact_at_infinite_logits(backend, dtype):
    z, t, loss, grad_z, grad_t = (np.array(column, dtype) for column in zip(*INFINITE_LOGITS))
    for samples in ((), (3,)):  # the fused kernel's rows, and samples sharing the targets
        logits = mv.Tensor(np.broadcast_to(z, (*samples, len(z))).copy().reshape(*samples, len(z), 1),
                           requires_grad=True)
        targets = mv.Tensor(t.reshape(-1, 1), requires_grad=True)
        with kernels.use(backend), np.errstate(invalid="raise"):  # no 0·∞ formed along the way
            out = functions.bernoulli_log_prob(logits, targets)
            out.sum().backward()
        copies = int(np.prod(samples))
        np.testing.assert_allclose(-out.data, np.broadcast_to(loss, out.shape), rtol=1e-6, atol=1e-30)
        np.testing.assert_allclose(-logits.grad.reshape(-1, len(z)), np.broadcast_to(grad_z, (copies, len(z))),
                                   rtol=1e-6, atol=1e-30)
        np.testing.assert_allclose(-targets.grad.ravel(), copies * grad_t, rtol=1e-6)
        assert out.dtype == dtype


def test_binary_cross_entropy_with_logits_at_infinite_logits_agrees_with_pytorch_where_it_is_finite_or_infinite():
    torch = pytest.importorskip("torch")
    z, t, loss, grad_z, _ = (np.array(column, np.float32) for column in zip(*INFINITE_LOGITS))
    logits = torch.tensor(z, requires_grad=True)
    theirs = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor(t), reduction="none")
    theirs.sum().backward()
    defined = ~np.isnan(theirs.detach().numpy())  # PyTorch 2.13 gives NaN at (+∞, 1), (−∞, 0) and (−∞, ½)
    assert defined.sum() >= 5
    for backend in kernels.BACKENDS:
        with kernels.use(backend):
            ours = functions.binary_cross_entropy_with_logits(mv.Tensor(z, requires_grad=True), t, reduction="none")
        np.testing.assert_allclose(ours.data[defined], theirs.detach().numpy()[defined], rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(grad_z, logits.grad.numpy(), rtol=1e-6)  # PyTorch's gradient is right at all


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_bernoulli_log_prob_refuses_values_outside_0_1_on_both_backends(backend):
    with kernels.use(backend), pytest.raises(ValueError, match=r"bernoulli_log_prob: targets must hold probabilities "
                                                                 r"in \[0, 1\], got values in \[0.0, 255.0\]"):
        functions.bernoulli_log_prob(np.zeros((2, 3), np.float32), np.array([[0, 255, 1]] * 2, np.float32))


def test_gaussian_log_prob_is_finite_at_tiny_variances_in_float32():
    mu, logvar = mv.Tensor(np.zeros(1, np.float32)), mv.Tensor(np.full(1, -90.0, np.float32), requires_grad=True)
    value = mv.distributions.DiagonalGaussian(mu, logvar).log_prob(np.zeros(1, np.float32))
    assert value.item() == pytest.approx(-0.5 * (np.log(2 * np.pi) - 90.0), rel=1e-6)  # 44.08
    value.backward()
    assert np.isfinite(logvar.grad).all()


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_bias_gradients_accumulate_float32_columns_in_float64_on_both_backends(backend):
    g = np.full((1_000_000, 2), 0.1, np.float32)
    b = mv.Tensor(np.zeros(2, np.float32), requires_grad=True)
    x = mv.Tensor(np.zeros((1_000_000, 1), np.float32))
    w = mv.Tensor(np.zeros((2, 1), np.float32))
    with kernels.use(backend):
        functions.linear(x, w, b).backward(g)
    np.testing.assert_allclose(b.grad, [100000.0, 100000.0], rtol=1e-6)
    assert mv.sum(mv.Tensor(g), axis=0).data[0] == pytest.approx(100000.0, rel=1e-6)


def test_errors_name_the_function_and_the_shapes():
    f32 = np.zeros((2, 3), np.float32)
    for backend in kernels.BACKENDS:
        with kernels.use(backend):
            with pytest.raises(ValueError, match=r"linear: x \(2, 3\), weight \(4, 2\)"):
                functions.linear(mv.Tensor(f32), mv.Tensor(np.zeros((4, 2), np.float32)), np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="bernoulli_log_prob: dtypes differ"):
        fused.bernoulli_log_prob(f32, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"gaussian_rsample: eps of shape \(2, 2, 2, 3\) for mu of shape \(2, 3\)"):
        fused.gaussian_rsample(f32, f32, np.zeros((2, 2, 2, 3), np.float32))


@pytest.mark.parametrize("case", ["rsample(z, 2z)", "kl(z, z)", "linear(z, z, b)", "bernoulli(z, sigmoid z)",
                                  "linear_relu(z, z, z[0])"])
def test_derivatives_where_one_tensor_reaches_two_arguments_of_a_fused_node(case):
    eps = mv.Tensor(np.array([[1.0, -0.5], [0.3, 2.0]]))
    b = mv.Tensor(np.array([0.1, -0.2]))
    functions_of_z = {
        "rsample(z, 2z)": lambda z: functions.gaussian_rsample(z, 2 * z, eps),
        "kl(z, z)": lambda z: functions.kl_to_standard_normal(z, z),
        "linear(z, z, b)": lambda z: mv.tanh(functions.linear(z, z, b)),
        "bernoulli(z, sigmoid z)": lambda z: functions.bernoulli_log_prob(z, mv.sigmoid(z)),
        "linear_relu(z, z, z[0])": lambda z: mv.tanh(functions.linear_relu(z, z * 1.0, z[0])),
    }
    f = functions_of_z[case]
    z = np.array([[0.3, -0.5], [1.0, 0.2]])
    v = np.array([[1.0, 0.5], [-0.3, 2.0]])
    results = {}
    for backend in kernels.BACKENDS:
        with kernels.use(backend):
            plain = mv.Tensor(z, requires_grad=True)
            f(plain).sum().backward()
            results[backend] = (plain.grad, mv.grad(lambda t: f(t).sum())(z).data,
                                mv.hvp(lambda t: f(t).sum(), z, v).data)
    for fast, reference in zip(results["numba"], results["reference"]):
        np.testing.assert_allclose(fast, reference, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(results["numba"][1], results["numba"][0], rtol=1e-12)  # recorded = plain


def test_reductions_of_booleans_count():
    t = mv.Tensor(np.array([0.5, -1.0, 2.0]))
    assert (t > 0).sum().item() == 2 and (t > 0).mean().item() == pytest.approx(2 / 3)


# ------------------------------------------------------------------------ arguments the kernels do not take
ODD_ARGUMENTS = {
    "linear, zero-width input": (functions.linear, lambda: [np.ones((2, 0)), np.ones((3, 0)), np.ones(3)]),
    "bernoulli_log_prob, zero-width event": (functions.bernoulli_log_prob, lambda: [np.ones((2, 0)), np.ones((2, 0))]),
    "bernoulli_log_prob, boolean targets": (functions.bernoulli_log_prob,
                                            lambda: [np.linspace(-2, 2, 6).reshape(2, 3), np.eye(2, 3, dtype=bool)]),
    "kl_to_standard_normal, zero-width event": (functions.kl_to_standard_normal,
                                                lambda: [np.ones((2, 0)), np.ones((2, 0))]),
    "gaussian_rsample, zero-width event": (functions.gaussian_rsample,
                                           lambda: [np.ones((2, 0)), np.ones((2, 0)), np.ones((2, 0))]),
}


@pytest.mark.parametrize("case", ODD_ARGUMENTS)
def test_arguments_the_kernels_do_not_take_give_the_compositions_result_on_the_fast_backend(case):
    function, arguments = ODD_ARGUMENTS[case]
    results = {}
    for backend in kernels.BACKENDS:
        with kernels.use(backend):
            tensors = [mv.Tensor(a, requires_grad=a.dtype.kind == "f") for a in arguments()]
            out = function(*tensors)
            out.sum().backward()
        results[backend] = out.data, [t.grad for t in tensors]
    np.testing.assert_array_equal(results["numba"][0], results["reference"][0])
    for a, b in zip(results["numba"][1], results["reference"][1]):
        assert (a is None) == (b is None) and (a is None or np.array_equal(a, b))
