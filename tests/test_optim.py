"""minivae.optim: Adam and SGD against hand-computed steps, in-place updates, and their state."""
import numpy as np
import pytest

import minivae as mv
from minivae.nn import Parameter
from minivae.optim import SGD, Adam

THETA = np.array([0.5, -1.0, 2.0])
GRADS = [np.array([0.1, -0.2, 0.3]), np.array([-0.4, 0.05, 0.3])]


def run(optimizer_class, grads, dtype=np.float64, **hyper):
    """The parameter after one step per gradient, with its optimizer."""
    param = Parameter(THETA.astype(dtype))
    optimizer = optimizer_class([param], **hyper)
    for grad in grads:
        param.grad = grad.astype(dtype)
        optimizer.step()
    return param, optimizer


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_first_and_second_step_follow_algorithm_1(weight_decay):
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    # Step 1: m = (1−β₁)g, v = (1−β₂)g², so m̂ = g, v̂ = g².
    g1 = GRADS[0] + weight_decay * THETA
    m1, v1 = (1 - b1) * g1, (1 - b2) * g1 ** 2
    theta1 = THETA - lr * (m1 / (1 - b1)) / (np.sqrt(v1 / (1 - b2)) + eps)
    # Step 2: the moments decay once more and the bias corrections use t = 2.
    g2 = GRADS[1] + weight_decay * theta1
    m2, v2 = b1 * m1 + (1 - b1) * g2, b2 * v1 + (1 - b2) * g2 ** 2
    theta2 = theta1 - lr * (m2 / (1 - b1 ** 2)) / (np.sqrt(v2 / (1 - b2 ** 2)) + eps)

    param, _ = run(Adam, GRADS[:1], lr=lr, weight_decay=weight_decay)
    np.testing.assert_allclose(param.data, theta1, rtol=1e-12)
    np.testing.assert_allclose(theta1, THETA - lr * np.sign(g1), rtol=1e-6)  # the first step has size lr
    param, adam = run(Adam, GRADS, lr=lr, weight_decay=weight_decay)
    np.testing.assert_allclose(param.data, theta2, rtol=1e-12)
    np.testing.assert_allclose(adam.state["m"][0], m2, rtol=1e-12)
    np.testing.assert_allclose(adam.state["v"][0], v2, rtol=1e-12)
    assert adam.steps.tolist() == [2]


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_sgd_with_momentum_first_and_second_step(weight_decay):
    lr, mu = 0.1, 0.9
    b1 = GRADS[0] + weight_decay * THETA
    theta1 = THETA - lr * b1
    b2 = mu * b1 + GRADS[1] + weight_decay * theta1
    theta2 = theta1 - lr * b2
    param, _ = run(SGD, GRADS[:1], lr=lr, momentum=mu, weight_decay=weight_decay)
    np.testing.assert_allclose(param.data, theta1, rtol=1e-12)
    param, sgd = run(SGD, GRADS, lr=lr, momentum=mu, weight_decay=weight_decay)
    np.testing.assert_allclose(param.data, theta2, rtol=1e-12)
    np.testing.assert_allclose(sgd.state["velocity"][0], b2, rtol=1e-12)
    param, _ = run(SGD, GRADS, lr=lr)
    np.testing.assert_allclose(param.data, THETA - lr * (GRADS[0] + GRADS[1]), rtol=1e-12)


@pytest.mark.parametrize("optimizer_class, hyper", [(Adam, {"lr": 0.01}), (SGD, {"lr": 0.1, "momentum": 0.9})])
def test_updates_are_in_place_and_keep_float32(optimizer_class, hyper):
    param, optimizer = run(optimizer_class, GRADS * 3, dtype=np.float32, **hyper)
    array = param.data
    param.grad = GRADS[0].astype(np.float32)
    optimizer.step()
    assert param.data is array and param.data.dtype == np.float32
    assert all(a.dtype == np.float32 for arrays in optimizer.state.values() for a in arrays)
    reference, _ = run(optimizer_class, GRADS * 3 + GRADS[:1], **hyper)
    np.testing.assert_allclose(param.data, reference.data, rtol=1e-5)


def test_parameters_without_gradient_are_skipped():
    used, unused = Parameter(THETA.copy()), Parameter(THETA.copy())
    adam = Adam([used, unused], lr=0.1)
    used.grad = GRADS[0].copy()
    adam.step()
    np.testing.assert_array_equal(unused.data, THETA)
    assert adam.steps.tolist() == [1, 0] and not adam.state["m"][1].any()
    adam.zero_grad()
    assert used.grad is None and unused.grad is None


def test_adam_minimizes_a_quadratic():
    target = np.array([3.0, -2.0])
    x = Parameter(np.zeros(2))
    adam = Adam([x], lr=0.1)
    for _ in range(500):
        adam.zero_grad()
        ((x - target) ** 2).sum().backward()
        adam.step()
    np.testing.assert_allclose(x.data, target, atol=1e-3)


@pytest.mark.parametrize("optimizer_class, hyper", [(Adam, {"lr": 0.05, "betas": (0.8, 0.99), "weight_decay": 0.01}),
                                                    (SGD, {"lr": 0.05, "momentum": 0.5})])
def test_state_dict_round_trip_through_npz_continues_identically(tmp_path, optimizer_class, hyper):
    rng = np.random.default_rng(0)
    grads = [[rng.standard_normal((3, 2)), rng.standard_normal(2)] for _ in range(6)]

    def step(optimizer, params, grad_pair):
        for p, g in zip(params, grad_pair):
            p.grad = g.copy()
        optimizer.step()

    params = [Parameter(rng.standard_normal((3, 2))), Parameter(rng.standard_normal(2))]
    original = optimizer_class(params, **hyper)
    for g in grads[:3]:
        step(original, params, g)
    np.savez(tmp_path / "optimizer.npz", **original.state_dict())

    copies = [Parameter(p.data.copy()) for p in params]
    restored = optimizer_class(copies, lr=1.0)
    with np.load(tmp_path / "optimizer.npz") as saved:
        restored.load_state_dict(saved)
    assert restored.lr == hyper["lr"]
    for g in grads[3:]:
        step(original, params, g)
        step(restored, copies, g)
    for p, q in zip(params, copies):
        np.testing.assert_array_equal(p.data, q.data)
    state = restored.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert state["step"].tolist() == [6, 6]


def test_state_dict_keys():
    adam = Adam([Parameter(np.zeros(2)), Parameter(np.zeros(3))])
    assert sorted(adam.state_dict()) == sorted(["step", "lr", "beta1", "beta2", "eps", "weight_decay",
                                                "m.0", "m.1", "v.0", "v.1"])
    assert sorted(SGD([Parameter(np.zeros(2))], lr=0.1).state_dict()) == sorted(
        ["step", "lr", "momentum", "weight_decay", "velocity.0"])


@pytest.mark.parametrize("edit, error, message", [
    (lambda s: s.pop("v.1"), KeyError, r"missing keys \['v.1'\]"),
    (lambda s: s.update({"m.2": np.zeros(1)}), KeyError, r"unexpected keys \['m.2'\]"),
    (lambda s: s.update({"m.0": np.zeros(5)}), ValueError, r"'m.0' has shape \(5,\).*needs shape \(2,\)"),
    (lambda s: s.update({"v.0": np.zeros(2, np.float32)}), ValueError, "'v.0'.*dtype float32.*float64"),
    (lambda s: s.update(step=np.array([1])), ValueError, "'step' must hold 2 non-negative ints"),
    (lambda s: s.update(lr=np.ones(2)), ValueError, "'lr' must be a scalar"),
    (lambda s: s.update(beta1=np.array(1.5)), ValueError, r"beta1 must be in \[0, 1\)"),
])
def test_load_state_dict_errors_leave_the_optimizer_unchanged(edit, error, message):
    adam = Adam([Parameter(np.zeros(2)), Parameter(np.zeros(3))], lr=0.5)
    state = adam.state_dict()
    state["m.0"] = np.ones(2)
    edit(state)
    with pytest.raises(error, match=message):
        adam.load_state_dict(state)
    assert adam.lr == 0.5 and not adam.state["m"][0].any()


def test_sgd_state_is_not_adam_state():
    sgd = SGD([Parameter(np.zeros(2))], lr=0.1)
    with pytest.raises(KeyError, match=r"missing keys \['beta1', 'beta2', 'eps', 'm.0', 'v.0'\]"):
        Adam([Parameter(np.zeros(2))]).load_state_dict(sgd.state_dict())


def test_constructor_errors():
    with pytest.raises(ValueError, match="Adam: the parameter list is empty"):
        Adam([])
    with pytest.raises(TypeError, match="SGD: parameter 0 must be a leaf Tensor that requires grad"):
        SGD([mv.Tensor(np.zeros(2))], lr=0.1)
    p = Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="more than once"):
        Adam([p, p])
    with pytest.raises(ValueError, match="Adam: lr must be >= 0, got -1.0"):
        Adam([p], lr=-1)
    with pytest.raises(ValueError, match=r"Adam: beta2 must be in \[0, 1\), got 1.0"):
        Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="Adam: betas must be a pair"):
        Adam([p], betas=(0.9,))
    with pytest.raises(ValueError, match="SGD: momentum must be >= 0"):
        SGD([p], lr=0.1, momentum=-0.5)


def test_adam_updates_a_0d_parameter_on_both_backends():
    from minivae import kernels
    for backend in kernels.BACKENDS:
        p = mv.Tensor(np.array(1.0), requires_grad=True)
        opt = mv.Adam([p], lr=0.1)
        p.grad = np.array(2.0)
        with kernels.use(backend):
            opt.step()
        assert p.data.shape == () and p.data == pytest.approx(0.9)


@pytest.mark.parametrize("optimizer_class, hyper", [(Adam, {"lr": 0.1}), (SGD, {"lr": 0.1, "momentum": 0.9})])
@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_a_step_after_backward_with_create_graph_steps_on_the_gradients_value(optimizer_class, hyper, backend):
    """After backward(create_graph=True) .grad is a Tensor: the step uses its value, as PyTorch's does."""
    from minivae import kernels
    if backend == "numba":
        pytest.importorskip("numba")
    plain, recorded = (Parameter(THETA.astype(np.float32)) for _ in range(2))
    expected, stepped = optimizer_class([plain], **hyper), optimizer_class([recorded], **hyper)
    (plain * plain).sum().backward()
    (recorded * recorded).sum().backward(create_graph=True)
    assert isinstance(recorded.grad, mv.Tensor)
    with kernels.use(backend):
        expected.step()
        stepped.step()
    np.testing.assert_array_equal(recorded.data, plain.data)
    assert not np.array_equal(recorded.data, THETA.astype(np.float32))
    assert stepped.steps.tolist() == [1]


@pytest.mark.parametrize("optimizer_class, hyper", [(Adam, {"lr": 0.1}), (SGD, {"lr": 0.1, "momentum": 0.9})])
@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_a_read_only_parameter_is_refused_in_one_line_and_nothing_changes(optimizer_class, hyper, backend):
    from minivae import kernels
    if backend == "numba":
        pytest.importorskip("numba")
    array = THETA.copy()
    array.flags.writeable = False
    p = Parameter(array)
    optimizer = optimizer_class([p], **hyper)
    p.grad = np.ones(3)
    with kernels.use(backend), pytest.raises(ValueError) as caught:
        optimizer.step()
    message = str(caught.value)
    assert "\n" not in message and "read-only" in message and "parameter 0" in message, message
    assert optimizer.steps.tolist() == [0]
    np.testing.assert_array_equal(p.data, THETA)
    assert all(not buffer[0].any() for buffer in optimizer.state.values())


@pytest.mark.parametrize("update", ["adam_update", "sgd_update"])
def test_the_update_functions_take_a_tensor_gradient(update):
    from minivae import optim
    param, expected = THETA.copy(), THETA.copy()
    grad = np.array([0.1, -0.2, 0.3])
    buffers = [np.zeros(3) for _ in range(2 if update == "adam_update" else 1)]
    arguments = (1, 0.1, 0.9, 0.999, 1e-8) if update == "adam_update" else (0.1, 0.9, 0.0)
    getattr(optim, update)(expected, grad, *[b.copy() for b in buffers], *arguments)
    getattr(optim, update)(param, mv.Tensor(grad, requires_grad=True) * 1.0, *buffers, *arguments)
    np.testing.assert_array_equal(param, expected)
