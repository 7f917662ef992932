"""One engine: every fast path shows the eager engine's graph and numbers, or refuses with a clear error.

The fused kernels (the default backend) against the reference backend for every way a user can observe or
change a gradient; the captured step against the eager step for every way a loss can read the batch, a draw
or a value of its own outside the engine's ops (refused: never a silent difference), for gradient hooks,
``retain_grad`` and scalars that vary between steps; the backend switch.
"""
import subprocess
import sys
import threading

import numpy as np
import pytest

import minivae as mv
from minivae import kernels
from minivae.capture import CaptureError, capture_step


# ------------------------------------------------------------------------ hooks and retain_grad on the default backend
RELUS = {"Tensor.relu": lambda h: h.relu(), "mv.relu": lambda h: mv.relu(h), "nn.ReLU": lambda h: mv.nn.ReLU()(h)}


def layer_and_input():
    lin = mv.nn.Linear(3, 4, rng=0, dtype=np.float64)
    x = mv.Tensor(np.random.default_rng(1).standard_normal((5, 3)))
    return lin, x


@pytest.mark.parametrize("relu", RELUS)
def test_each_relu_of_a_linear_layer_gives_the_same_graph_on_both_backends(relu):
    for backend in kernels.BACKENDS:
        lin, x = layer_and_input()
        with kernels.use(backend):
            h = lin(x)
            y = RELUS[relu](h)
        assert y.parents == (h,) and y.op.name == "relu", backend  # the layer's output stays in the graph


@pytest.mark.parametrize("backend", kernels.BACKENDS)
@pytest.mark.parametrize("relu", RELUS)
def test_a_hook_and_retain_grad_on_a_linear_layers_output_are_honoured(backend, relu):
    lin, x = layer_and_input()
    seen = []
    with kernels.use(backend):
        h = lin(x)
        h.retain_grad()
        h.register_hook(lambda g: seen.append(g.copy()) or g * 0)
        (RELUS[relu](h) ** 2).sum().backward()
    assert len(seen) == 1 and h.grad is not None
    np.testing.assert_array_equal(h.grad, np.zeros_like(h.data))  # the hook's replacement is what h keeps
    assert not lin.weight.grad.any() and not lin.bias.grad.any()


def assert_backends_agree(gradients_of):
    """``gradients_of(layer, h)`` (arrays) on a fresh layer's output h, the same on both backends."""
    found = {}
    for backend in kernels.BACKENDS:
        lin, x = layer_and_input()
        with kernels.use(backend):
            found[backend] = gradients_of(lin, lin(x))
    for a, b in zip(found["numba"], found["reference"]):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("relu", RELUS)
def test_the_gradient_of_a_linear_layers_output_with_two_consumers_is_their_sum(relu):
    def gradients_of(lin, h):
        h.retain_grad()
        (RELUS[relu](h) ** 2 + h * 3).sum().backward()
        return h.grad, lin.weight.grad
    assert_backends_agree(gradients_of)


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_a_hook_on_a_parameter_and_on_a_linear_layers_input_is_called(backend):
    lin, x = layer_and_input()
    x.requires_grad_()
    with kernels.use(backend):
        lin.weight.register_hook(lambda g: g * 0)
        x.register_hook(lambda g: g + 1)
        (lin(x).relu() ** 2).sum().backward()
    assert not lin.weight.grad.any() and lin.bias.grad.any()
    assert (x.grad != 0).all()


def test_a_mlp_calls_the_fused_layer_explicitly_and_gives_the_reference_numbers():
    results = {}
    for backend in kernels.BACKENDS:
        mlp = mv.nn.MLP([3, 4, 2], rng=0, dtype=np.float64)
        with kernels.use(backend):
            out = mlp(np.random.default_rng(0).standard_normal((5, 3)))
            out.sum().backward()
        results[backend] = out.data, [p.grad for p in mlp.parameters()], mv.op_counts(out)
    assert results["numba"][2]["linear_relu"] == 1 and "relu" not in results["numba"][2]
    np.testing.assert_allclose(results["numba"][0], results["reference"][0], rtol=1e-12)
    for a, b in zip(results["numba"][1], results["reference"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-12)


# ------------------------------------------------------------------------ the captured step against the eager step
def make(seed=0):
    model = mv.VAE(784, (16,), 2, rng=seed)
    return model, mv.Adam(model.parameters(), lr=1e-3)


def batches(n, size=8, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.random((size, 784)) < 0.5).astype(np.float32) for _ in range(n)]


def compare(loss_of, steps=4, backend="numba", **scalars_of_step):
    """Run the eager and the captured step side by side; assert the same losses and parameters every step."""
    with kernels.use(backend):
        eager_model, eager_optimizer = make()
        model, optimizer = make()
        step = capture_step(model, optimizer, lambda x, rng, **kw: loss_of(model, x, rng, **kw))
        eager_rng, rng = np.random.default_rng(5), np.random.default_rng(5)
        for i, x in enumerate(batches(steps)):
            scalars = {name: f(i) for name, f in scalars_of_step.items()}
            eager_optimizer.zero_grad()
            loss = loss_of(eager_model, mv.Tensor(x), eager_rng, **scalars)
            loss.backward()
            eager_optimizer.step()
            assert step(x, rng, **scalars) == loss.data.item(), f"step {i}"
            for (name, a), b in zip(eager_model.named_parameters(), model.parameters()):
                assert np.array_equal(a.data, b.data), (i, name)
    return step


LEAKS = {  # a loss reading the batch, a draw or a value of its own outside the engine's ops
    "weights x.data.mean(axis=1)": lambda m, x, rng: (m.negative_elbo(x, rng, reduction="none")
                                                      * mv.Tensor(x.data.mean(axis=1))).mean(),
    "float(x.data.mean())": lambda m, x, rng: m.negative_elbo(x, rng) * float(x.data.mean()),
    "rows of a mask from x.data": lambda m, x, rng: m.negative_elbo(x, rng, reduction="none")[
        x.data.sum(axis=1) > 392].sum(),
    "np.where on x.data": lambda m, x, rng: (m.negative_elbo(x, rng, reduction="none")
                                             * np.where(x.data[:, 0] > 0, 1.0, 2.0).astype(np.float32)).mean(),
    "np.asarray(x)": lambda m, x, rng: m.negative_elbo(x, rng) + float(np.asarray(x).sum()) * 1e-3,
    "x.numpy() via an ndarray op": lambda m, x, rng: m.negative_elbo(np.sqrt(x.numpy()), rng),
    "float(x.sum())": lambda m, x, rng: m.negative_elbo(x, rng) / float(x.sum()),
    "x.item of a mean": lambda m, x, rng: m.negative_elbo(x, rng) * x.mean().item(),
    "a draw scaled outside the engine": lambda m, x, rng: m.negative_elbo(x, rng) * float(rng.random() + 1),
    "a draw converted with astype": lambda m, x, rng: m.negative_elbo(x, rng) + (
        mv.Tensor(rng.standard_normal(3).astype(np.float32)) * next(m.parameters()).sum()).sum(),
}


@pytest.mark.parametrize("leak", LEAKS)
def test_a_loss_that_reads_the_batch_or_a_draw_outside_the_engine_is_refused(leak):
    with pytest.raises(CaptureError, match="differs between|does not depend on the batch"):
        compare(lambda m, x, rng: LEAKS[leak](m, x, rng))


def test_a_value_of_the_loss_functions_own_that_changes_is_refused_and_names_step_arguments():
    calls = {}

    def warming(m, x, rng):  # a weight the loss raises by itself at every step (of each model)
        calls[id(m)] = calls.get(id(m), 0) + 1
        return m.negative_elbo(x, rng) * (0.1 * calls[id(m)])
    with pytest.raises(CaptureError, match=r"step\(x, rng, name=value\)"):
        compare(warming)


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_kl_warm_up_through_a_step_argument_equals_the_eager_step(backend):
    def loss(m, x, rng, beta):
        return m.negative_elbo(x, rng) * beta
    compare(loss, steps=5, backend=backend, beta=lambda i: 0.2 * i)


def test_ops_on_the_batch_and_on_draws_outside_a_gradient_are_replayed():
    def loss(m, x, rng):
        noise = mv.Tensor(rng.standard_normal((8, 784), dtype=np.float32)) * 0.05   # Tensor(draw) * 0.05
        eps = rng.standard_normal(3, dtype=np.float32)
        w = next(m.parameters())
        return m.negative_elbo(mv.maximum(mv.minimum(x + noise, 1.0), 0.0), rng) \
            + (w.sum() * eps).sum() + (w.mean() * eps).sum()                        # one draw, two ops
    compare(loss)


@pytest.mark.parametrize("backend", kernels.BACKENDS)
@pytest.mark.parametrize("hook", ["clip", "freeze", "scale"])
def test_hooks_on_parameters_are_replayed(backend, hook):
    hooks = {"clip": lambda g: np.clip(g, -1e-3, 1e-3), "freeze": lambda g: g * 0, "scale": lambda g: g * 2}

    def loss(m, x, rng):
        for p in m.parameters():
            if not p._hooks:
                p.register_hook(hooks[hook])
        return m.negative_elbo(x, rng)
    compare(loss, backend=backend)


def test_a_hook_or_retain_grad_on_a_tensor_made_inside_the_loss_is_refused_naming_it():
    def hooked(m, x, rng):
        loss = m.negative_elbo(x, rng)
        loss.register_hook(lambda g: g)
        return loss

    def retained(m, x, rng):
        return m.negative_elbo(x, rng).retain_grad() * 1.0
    with pytest.raises(CaptureError, match="hook"):
        compare(hooked)
    with pytest.raises(CaptureError, match="retain_grad"):
        compare(retained)


def test_a_loss_of_shape_1_is_a_loss():
    compare(lambda m, x, rng: m.negative_elbo(x, rng).reshape(1))


def test_replaying_with_a_random_state_is_a_clear_error():
    model, optimizer = make()
    step = capture_step(model, optimizer)
    x, = batches(1)
    step(x, np.random.default_rng(0))
    with pytest.raises(TypeError, match="np.random.Generator"):
        step(x, np.random.RandomState(0))


def test_a_scalar_step_argument_must_be_a_number():
    model, optimizer = make()
    step = capture_step(model, optimizer, lambda x, rng, beta: model.negative_elbo(x, rng) * beta)
    x, = batches(1)
    with pytest.raises(TypeError, match="beta"):
        step(x, np.random.default_rng(0), beta=np.ones(3))


# ------------------------------------------------------------------------ the backend switch
def test_use_as_a_plain_call_switches_the_backend_of_this_thread_only():
    before = kernels.active()
    try:
        kernels.use("reference")
        assert kernels.active() == "reference"
        seen = []
        thread = threading.Thread(target=lambda: seen.append(kernels.active()))
        thread.start()
        thread.join()
        assert seen == [before]
    finally:
        kernels.use(before)
    assert kernels.active() == before


@pytest.mark.parametrize("name", ["cuda", "numpy", "Reference"])
def test_use_rejects_an_unknown_name(name):
    before = kernels.active()
    with pytest.raises(ValueError, match="unknown kernel backend"):
        kernels.use(name)
    assert kernels.active() == before


def test_an_unknown_backend_in_the_environment_is_one_line_for_every_command():
    env = {"MINIVAE_KERNELS": "fortran", "PATH": "/usr/bin:/bin"}
    import os
    env = {**os.environ, **env}
    done = subprocess.run([sys.executable, "-m", "minivae", "sample", "--help"], env=env, capture_output=True,
                          text=True)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "MINIVAE_KERNELS" in done.stderr


@pytest.mark.parametrize("relu", RELUS)
def test_gradients_with_respect_to_a_linear_layers_output_agree_on_both_backends(relu):
    assert_backends_agree(lambda lin, h: [g.data for g in mv.gradients((RELUS[relu](h) ** 2).sum(), [h, lin.weight])])


def test_registering_a_fused_implementation_leaves_the_op_as_declared():
    from minivae import functions
    from minivae.engine.ops import primitive

    @primitive(saves=True, twice_differentiable=False)
    def doubled(x):
        return x * 2, None

    @doubled.defvjp
    def doubled_vjp(ctx, g):
        return (g * 2,)
    composite = functions.function(lambda x: x * 2)
    assert composite.implement(doubled) is doubled
    assert doubled.vjp is doubled_vjp and doubled.twice_differentiable is False
    x = mv.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    with kernels.use("numba"), pytest.raises(RuntimeError, match="doubled"):
        composite(x).sum().backward(create_graph=True)
