"""The captured step against the eager step it replays: same losses, gradients and parameters, bit for bit."""
import numpy as np
import pytest

import minivae as mv
from minivae import kernels
from minivae.capture import CaptureError, NonFiniteError, capture_step

BACKENDS = ["numba", "reference"]


def make(hidden=(32,), latent=4, optimizer="adam", seed=0, input_dim=784):
    model = mv.VAE(input_dim, hidden, latent, rng=seed)
    if optimizer == "adam":
        return model, mv.Adam(model.parameters(), lr=1e-3)
    return model, mv.SGD(model.parameters(), lr=1e-2, momentum=0.9)


def batches(sizes, input_dim=784, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.random((n, input_dim)) < 0.5).astype(np.float32) for n in sizes]


def eager_step(model, optimizer, x, rng, samples=1, estimator="closed-form"):
    optimizer.zero_grad()
    loss = model.negative_elbo(mv.Tensor(x), rng, samples, estimator)
    loss.backward()
    optimizer.step()
    return float(loss.data)


def assert_same(eager_model, captured_model):
    for (name, a), b in zip(eager_model.named_parameters(), captured_model.parameters()):
        assert np.array_equal(a.data, b.data), name
        assert np.array_equal(a.grad, b.grad), name


def run_both(xs, samples=1, estimator="closed-form", optimizer="adam", **model_args):
    eager_model, eager_optimizer = make(optimizer=optimizer, **model_args)
    model, opt = make(optimizer=optimizer, **model_args)
    step = capture_step(model, opt, lambda x, rng: model.negative_elbo(x, rng, samples, estimator))
    eager_rng, rng = np.random.default_rng(7), np.random.default_rng(7)
    for x in xs:
        expected = eager_step(eager_model, eager_optimizer, x, eager_rng, samples, estimator)
        assert step(x, rng) == expected
        assert_same(eager_model, model)
    assert eager_rng.bit_generator.state == rng.bit_generator.state
    return step, eager_model, eager_optimizer, model, opt


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_model_same_as_eager_over_steps(backend):
    with kernels.use(backend):
        step, *_ = run_both(batches([128] * 4), hidden=(400,), latent=20)
    assert step.traces == 2  # the first two steps are the engine's own, recorded; the others replayed


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("samples", [1, 10])
@pytest.mark.parametrize("estimator", ["closed-form", "monte-carlo"])
def test_same_as_eager_with_samples_estimators_and_a_smaller_last_batch(backend, samples, estimator):
    with kernels.use(backend):
        step, *_ = run_both(batches([32, 32, 12, 32, 12, 32, 12]), samples, estimator)
    assert step.traces == 4  # two recorded steps per batch shape, one program each
    assert len(step.programs) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_sgd_and_deeper_networks_same_as_eager(backend):
    with kernels.use(backend):
        run_both(batches([16, 16, 16]), optimizer="sgd", hidden=(24, 12), latent=3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_parameter_without_gradient_is_left_as_the_eager_step_leaves_it(backend):
    xs = batches([8] * 3)
    results = []
    for capture in (False, True):
        model = mv.VAE(784, (16,), 2, rng=0)
        unused = mv.nn.Parameter(np.ones(3, np.float32))
        opt = mv.Adam([*model.parameters(), unused], lr=1e-3)
        rng = np.random.default_rng(0)
        step = capture_step(model, opt) if capture else None
        with kernels.use(backend):
            losses = [step(x, rng) if capture else eager_step(model, opt, x, rng) for x in xs]
        results.append((losses, model.state_dict(), unused.data.copy(), unused.grad, opt.steps.copy()))
    (eager_losses, eager_state, eager_unused, eager_grad, eager_steps), (losses, state, kept, grad, steps) = results
    assert losses == eager_losses and np.array_equal(kept, eager_unused) and grad is eager_grad is None
    assert all(np.array_equal(eager_state[k], v) for k, v in state.items())
    assert np.array_equal(steps, eager_steps) and steps[-1] == 0


def test_switching_backend_traces_again():
    model, opt = make()
    step = capture_step(model, opt)
    x, = batches([8])
    rng = np.random.default_rng(0)
    with kernels.use("numba"):
        step(x, rng)
        step(x, rng)
    with kernels.use("reference"):
        step(x, rng)
        step(x, rng)
    assert step.traces == 4
    assert "numba kernels" in step.program() and "reference kernels" in step.program()


def test_eager_and_captured_steps_interleave_on_one_model():
    eager_model, eager_optimizer = make()
    model, opt = make()
    step = capture_step(model, opt)
    eager_rng, rng = np.random.default_rng(3), np.random.default_rng(3)
    for i, x in enumerate(batches([16] * 6)):
        expected = eager_step(eager_model, eager_optimizer, x, eager_rng)
        got = eager_step(model, opt, x, rng) if i % 2 else step(x, rng)
        assert got == expected
        assert_same(eager_model, model)


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_from_state_dicts_continues_as_if_never_stopped(backend):
    xs = batches([16] * 6)
    with kernels.use(backend):
        eager_model, eager_optimizer = make()
        eager_rng = np.random.default_rng(11)
        expected = [eager_step(eager_model, eager_optimizer, x, eager_rng) for x in xs]

        model, opt = make()
        rng = np.random.default_rng(11)
        step = capture_step(model, opt)
        got = [step(x, rng) for x in xs[:3]]
        saved = model.state_dict(), opt.state_dict(), rng.bit_generator.state

        resumed_model, resumed_opt = make(seed=99)  # other initial values: everything comes from the state
        resumed_model.load_state_dict(saved[0])
        resumed_opt.load_state_dict(saved[1])
        resumed_rng = np.random.default_rng()
        resumed_rng.bit_generator.state = saved[2]
        resumed = capture_step(resumed_model, resumed_opt)
        got += [resumed(x, resumed_rng) for x in xs[3:]]
    assert got == expected
    assert_same(eager_model, resumed_model)
    assert all(np.array_equal(a, b) for a, b in zip(eager_optimizer.state["m"], resumed_opt.state["m"]))


def test_load_state_dict_into_a_captured_model_is_seen_by_the_next_step():
    model, opt = make()
    step = capture_step(model, opt)
    x, = batches([8])
    rng = np.random.default_rng(0)
    start_model, start_opt = model.state_dict(), opt.state_dict()
    first = step(x, np.random.default_rng(0))
    step(x, rng)
    model.load_state_dict(start_model)       # in place: the flat buffer sees it
    opt.load_state_dict(start_opt)
    assert step(x, np.random.default_rng(0)) == first


def test_replaced_parameter_arrays_are_linked_again():
    reference_model, reference_opt = make()
    model, opt = make()
    step = capture_step(model, opt)
    x, = batches([8])
    step(x, np.random.default_rng(0))
    eager_step(reference_model, reference_opt, x, np.random.default_rng(0))
    p = next(model.parameters())
    p.data = p.data.copy()                   # no longer a view into the flat buffer
    opt.state["m"][0] = opt.state["m"][0].copy()
    assert step(x, np.random.default_rng(1)) == eager_step(reference_model, reference_opt, x,
                                                           np.random.default_rng(1))
    assert_same(reference_model, model)
    assert np.shares_memory(p.data, step._flat.param)


def test_parameters_become_views_into_one_buffer_at_capture():
    model, opt = make()
    before = model.state_dict()
    step = capture_step(model, opt)
    assert all(np.shares_memory(p.data, step._flat.param) for p in model.parameters())
    assert all(np.shares_memory(m, step._flat.m) for m in opt.state["m"])
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_program_lists_every_instruction():
    model, opt = make()
    step = capture_step(model, opt)
    assert "no program yet" in str(step)
    x, = batches([8])
    with kernels.use("numba"):
        step(x, np.random.default_rng(0))
        assert "no program yet" in str(step)
        step(x, np.random.default_rng(0))
    text = step.program((8, 784))
    assert text == str(step)
    for line in ("%0 = x  (8, 784) float32", "rng.standard_normal((1, 8, 4), dtype=float32)",
                 "encoder.0.weight  (32, 784) float32  params[0:25088]", "linear_relu(%0, %1, %2)",
                 "bernoulli_log_prob.vjp", "grads[decoder.2.bias]", "adam_update(params, grads, m, v)"):
        assert line in text, line
    forward = text.split("forward:\n")[1].split("\nbackward")[0].splitlines()
    assert len(forward) == len(step.programs[next(iter(step.programs))].forward) == 12
    with pytest.raises(KeyError, match="no program for batches of shape"):
        step.program((3, 784))


def test_non_finite_loss_raises_before_any_parameter_changes():
    model, opt = make()
    step = capture_step(model, opt)
    x, = batches([8])
    step(x, np.random.default_rng(0))
    before = model.state_dict()
    next(model.parameters()).data[0, 0] = np.nan
    before["encoder.0.weight"][0, 0] = np.nan
    with pytest.raises(NonFiniteError, match="the loss is nan"):
        step(x, np.random.default_rng(0))
    assert all(np.array_equal(before[k], v, equal_nan=True) for k, v in model.state_dict().items())


def test_non_finite_gradient_is_named():
    model, opt = make()
    def loss_fn(x, rng):
        return model.negative_elbo(x, rng) + (mv.abs(next(model.parameters())) ** 0.5).sum() * 0.0
    step = capture_step(model, opt, loss_fn)
    x, = batches([8])
    params = next(model.parameters())
    params.data[0, 0] = 0.0                   # d sqrt(w)/dw = inf at 0, times 0: nan
    before = model.state_dict()
    with pytest.raises(NonFiniteError, match="gradient of encoder.0.weight"):
        step(x, np.random.default_rng(0))
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_a_draw_changed_outside_the_engine_is_refused_at_the_second_step():
    model, opt = make()
    x, y = batches([8, 8])
    def scaled(x, rng):
        noise = mv.Tensor(rng.standard_normal(3, dtype=np.float32) * 2)  # a draw changed outside the engine
        return model.negative_elbo(x, rng) + (noise * next(model.parameters()).sum()).sum()
    step = capture_step(model, opt, scaled)
    rng = np.random.default_rng(0)
    step(x, rng)
    with pytest.raises(CaptureError, match="differs between the first two steps.*constant"):
        step(y, rng)


def test_a_draw_that_reaches_no_op_is_drawn_again_at_every_step():
    def run_loss(model):
        return lambda x, rng: model.negative_elbo(x, rng) + float(rng.random()) * 0
    eager_model, eager_optimizer = make()
    model, opt = make()
    step = capture_step(model, opt, run_loss(model))
    eager_rng, rng = np.random.default_rng(4), np.random.default_rng(4)
    for x in batches([8] * 4):
        eager_optimizer.zero_grad()
        loss = run_loss(eager_model)(mv.Tensor(x), eager_rng)
        loss.backward()
        eager_optimizer.step()
        assert step(x, rng) == float(loss.data)
    assert eager_rng.bit_generator.state == rng.bit_generator.state


def test_a_constant_made_from_the_batch_outside_the_engine_is_refused():
    model, opt = make()
    x, = batches([8])
    def leaky(x, rng):
        return model.negative_elbo(x, rng) + (mv.Tensor(x.data[:, :1]) * next(model.parameters()).sum()).sum()
    with pytest.raises(CaptureError, match="shares memory with the batch"):
        capture_step(model, opt, leaky)(x, np.random.default_rng(0))


def assert_replayed_as_eager(loss_of, xs, backend, latent):
    """``capture_step`` of the loss ``loss_of(model)`` gives the eager step's losses, gradients and parameters."""
    with kernels.use(backend):
        eager_model, eager_optimizer = make(input_dim=xs[0].shape[1], hidden=(5,), latent=latent)
        model, opt = make(input_dim=xs[0].shape[1], hidden=(5,), latent=latent)
        step = capture_step(model, opt, loss_of(model))
        eager_rng, rng = np.random.default_rng(3), np.random.default_rng(3)
        for x in xs:
            eager_optimizer.zero_grad()
            loss = loss_of(eager_model)(mv.Tensor(x), eager_rng)
            loss.backward()
            eager_optimizer.step()
            assert step(x, rng) == float(loss.data)
            assert_same(eager_model, model)
    return step


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("compare", ["operator", "function"])
def test_a_mask_from_the_engines_comparisons_is_recomputed_at_every_step(backend, compare):
    # The first column of the first two batches is the same, of the third not: a mask kept from the
    # recorded steps as a constant would pass the check of the second step and differ silently at the third.
    xs = batches([4, 4, 4], input_dim=6)
    xs[1][:, 0] = xs[0][:, 0]
    xs[2][:, 0] = 1 - xs[0][:, 0]

    def loss_of(model):
        def loss(x, rng):
            heavy = x[:, 0] > 0.5 if compare == "operator" else mv.greater(x[:, 0], np.float32(0.5))
            weight = mv.where(heavy, np.float32(1.0), np.float32(0.25))
            return -(model.reconstruction_log_likelihood(x, model.posterior(x).rsample(rng)) * weight).mean()
        return loss

    assert assert_replayed_as_eager(loss_of, xs, backend, latent=2).traces == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_loss_that_runs_a_backward_is_refused(backend):
    # A gradient penalty differentiates through relu's backward, whose mask is a constant: with the same
    # batch and draws at the first two steps, the program passed the second step's check and kept that
    # mask at the third, silently. Any backward inside the loss is refused at the first step.
    def penalised(model):
        def loss(x, rng):
            value = model.negative_elbo(x, rng)
            grads = mv.gradients(value, list(model.parameters()), create_graph=True)
            return value + 0.01 * sum((g * g).sum() for g in grads)
        return loss

    with kernels.use(backend):
        model, opt = make(input_dim=6, hidden=(4,), latent=2)
        x, = batches([4], input_dim=6)
        with pytest.raises(CaptureError, match="loss_fn runs a backward"):
            capture_step(model, opt, penalised(model))(x, np.random.default_rng(0))
        assert all(p.grad is None or not np.any(p.grad) for p in model.parameters())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("function", ["softmax", "log_softmax"])
def test_softmax_and_log_softmax_in_the_loss_are_replayed(backend, function):
    # Their shift (the maximum) was computed outside the engine's ops: a constant, so the program was refused.
    def loss_of(model):
        def loss(x, rng):
            posterior = model.posterior(x)
            z = posterior.rsample(rng)
            entropy_like = (getattr(mv, function)(z, axis=1) * z).sum(axis=1)
            return -(model.reconstruction_log_likelihood(x, z) - posterior.kl_divergence() + entropy_like).mean()
        return loss

    assert assert_replayed_as_eager(loss_of, batches([4, 4, 4, 2], input_dim=6), backend, latent=3).traces == 3


def test_bad_arguments():
    model, opt = make()
    x, = batches([8])
    with pytest.raises(TypeError, match="minivae optimizer"):
        capture_step(model, object())
    with pytest.raises(TypeError, match="np.random.Generator"):
        capture_step(model, opt)(x, 0)
    with pytest.raises(CaptureError, match="one-element Tensor"):
        capture_step(model, opt, lambda x, rng: model.negative_elbo(x, rng, reduction="none"))(x,
                                                                                              np.random.default_rng())
    other, _ = make()
    with pytest.raises(CaptureError, match="not a parameter of the optimizer"):
        capture_step(other, opt)(x, np.random.default_rng(0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_scalar_step_argument_is_a_program_input_read_at_every_step(backend):
    """KL warm-up: beta changes at every step; the captured step must use each step's beta (it used the first)."""
    def loss_fn(model):
        def loss(x, rng, beta):
            return model.negative_elbo(x, rng) * beta
        return loss
    xs = batches([8] * 4)
    with kernels.use(backend):
        eager_model, eager_optimizer = make()
        model, opt = make()
        step = capture_step(model, opt, loss_fn(model))
        eager_rng, rng = np.random.default_rng(2), np.random.default_rng(2)
        for i, x in enumerate(xs):
            beta = 0.25 * (i + 1)
            eager_optimizer.zero_grad()
            loss = loss_fn(eager_model)(mv.Tensor(x), eager_rng, beta)
            loss.backward()
            eager_optimizer.step()
            assert step(x, rng, beta=beta) == float(loss.data)
            assert_same(eager_model, model)
    assert step.traces <= 2
