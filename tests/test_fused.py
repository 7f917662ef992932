"""The fused ops: gradients against central differences on both kernel backends, values and
gradients equal to the same math written with the generic ops, dtypes kept, clear errors."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minivae as mv
from minivae import kernels
from minivae import testing as mvt
from minivae.kernels.fused import bce_with_logits_sum, dense, gaussian_kl, reparameterize

backends = pytest.mark.parametrize("backend", kernels.BACKENDS)


# ------------------------------------------------------------------------ the fused ops against the generic ones
def dense_relu(x, w, b):
    return dense(x, w, b, relu=True)


def generic_dense(x, w, b):
    return mv.linear(x.reshape(-1, x.shape[-1]), w, b).reshape(*x.shape[:-1], w.shape[0])


def generic_dense_relu(x, w, b):
    return generic_dense(x, w, b).relu()


def generic_bce_sum(z, t):
    return mv.binary_cross_entropy_with_logits(z, t, reduction="none").sum(axis=-1)


def generic_reparameterize(mu, logvar, eps):
    return mu + (0.5 * logvar).exp() * eps


def generic_gaussian_kl(mu, logvar):
    return -0.5 * (1.0 + logvar - mu * mu - logvar.exp()).sum(axis=-1)


@st.composite
def op_cases(draw):
    """(fused op, generic twin, input arrays) for a drawn dtype and shapes, batch axes included."""
    dtype = draw(mvt.float_dtypes())
    batch = draw(mvt.shapes(min_dims=1, max_dims=2, max_side=4))
    d, n_out = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    samples = draw(st.sampled_from([(), (1,), (3,)]))
    which = draw(st.sampled_from(["dense", "dense_relu", "bce", "reparameterize", "kl"]))
    array = lambda shape, low=-3.0, high=3.0: draw(mvt.float_arrays(shape, dtype, low, high))  # noqa: E731
    if which in ("dense", "dense_relu"):
        ops = (dense, generic_dense) if which == "dense" else (dense_relu, generic_dense_relu)
        return (*ops, [draw(mvt.nonzero_arrays((*batch, d), dtype)), array((n_out, d)), array((n_out,))])
    if which == "bce":
        return bce_with_logits_sum, generic_bce_sum, [array((*samples, *batch, d), -8, 8), array((*batch, d), 0, 1)]
    if which == "reparameterize":
        return reparameterize, generic_reparameterize, [array((*batch, d)), array((*batch, d)),
                                                        array((*samples, *batch, d))]
    return gaussian_kl, generic_gaussian_kl, [array((*batch, d)), array((*batch, d))]


def values_and_gradients(fn, arrays, seed=0):
    tensors = [mv.Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    cotangent = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    (out * cotangent).sum().backward()
    return out.data, [t.grad for t in tensors]


@given(op_cases(), st.sampled_from(kernels.BACKENDS))
def test_fused_ops_equal_the_generic_ops_in_value_and_gradient(case, backend):
    fused, generic, arrays = case
    with kernels.use(backend):
        value, grads = values_and_gradients(fused, arrays)
    expected_value, expected_grads = values_and_gradients(generic, arrays)
    rtol = 1e-4 if value.dtype == np.float32 else 1e-10
    assert value.dtype == arrays[0].dtype and value.shape == expected_value.shape
    np.testing.assert_allclose(value, expected_value, rtol=rtol, atol=rtol)
    for grad, expected, array in zip(grads, expected_grads, arrays):
        assert grad.dtype == array.dtype and grad.shape == array.shape
        np.testing.assert_allclose(grad, expected, rtol=rtol, atol=rtol * (1 + np.abs(expected).max()))


@given(op_cases(), st.sampled_from(kernels.BACKENDS))
def test_fused_op_gradients_match_central_differences(case, backend):
    fused, _, arrays = case
    if fused is dense_relu:  # away from ReLU's kink, where the central difference straddles it
        x, w, b = (a.astype(np.float64) for a in arrays)
        assume(np.abs(x @ w.T + b).min() > 1e-3)
    with kernels.use(backend):
        assert mv.gradcheck(fused, *[a.astype(np.float64) for a in arrays])


@backends
def test_the_vae_loss_and_gradients_are_the_same_on_both_backends(backend):
    x = (np.random.default_rng(1).random((16, 12)) < 0.3).astype(np.float64)
    model = mv.VAE(12, (8,), 3, rng=0, dtype=np.float64)
    with kernels.use(backend):
        loss = model.negative_elbo(x, np.random.default_rng(2))
        loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    model.zero_grad()
    with kernels.use("numpy" if backend == "numba" else "numba"):
        other = model.negative_elbo(x, np.random.default_rng(2))
        other.backward()
    np.testing.assert_allclose(loss.data, other.data, rtol=1e-12)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, grads[name], rtol=1e-10, atol=1e-12, err_msg=name)


# ------------------------------------------------------------------------ saving and sharing
@backends
def test_a_second_backward_pass_through_a_saving_op_recomputes_nothing_stale(backend):
    rng = np.random.default_rng(3)
    x = mv.Tensor(rng.standard_normal((4, 3)), requires_grad=True)
    w, b = (mv.Tensor(rng.standard_normal(s), requires_grad=True) for s in ((5, 3), (5,)))
    with kernels.use(backend):
        y = dense(x, w, b, relu=True)
        (y * 2.0).sum().backward()
        first = [t.grad.copy() for t in (x, w, b)]
        (y * 3.0).sum().backward()  # a new output gradient: the shared part is computed again
    for t, g in zip((x, w, b), first):
        np.testing.assert_allclose(t.grad, g * 2.5)


def test_what_a_forward_saves_belongs_to_its_node():
    @mv.primitive(saves=True)
    def keep(x):
        return x * 2, x.copy()

    @keep.defvjp
    def keep_vjp(ctx, g):
        return (g * 2,)
    a, b = keep(mv.Tensor(np.ones(2), requires_grad=True)), keep(mv.Tensor(np.zeros(2), requires_grad=True))
    assert a.saved is not b.saved and a.saved[0] == 1 and b.saved[0] == 0
    assert keep(np.ones(2))[0] == 2  # on plain arrays: the forward's output alone


def test_fused_backward_refuses_create_graph_naming_the_op():
    x = mv.Tensor(np.ones((2, 3)), requires_grad=True)
    w = mv.Tensor(np.ones((4, 3)), requires_grad=True)
    y = dense(x, w, np.zeros(4), relu=True).sum()
    with pytest.raises(RuntimeError, match="dense: its backward is a fused kernel"):
        y.backward(create_graph=True)


def test_x_needs_no_gradient_and_gets_none():
    x = mv.Tensor(np.ones((2, 3), np.float32))
    w = mv.Tensor(np.ones((4, 3), np.float32), requires_grad=True)
    dense(x, w, np.zeros(4, np.float32), relu=True).sum().backward()
    assert x.grad is None and w.grad.dtype == np.float32


# ------------------------------------------------------------------------ errors
def test_errors_name_the_op_and_the_shapes():
    f32 = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"dense: x \(2, 3\), weight \(4, 3\) and bias \(3,\); expected \(\.\.\., in\), "
                                         r"\(out, in\) and \(out,\)"):
        dense(f32, np.zeros((4, 3), np.float32), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"dense: x \(2, 3\), weight \(4, 2\)"):
        dense(f32, np.zeros((4, 2), np.float32), np.zeros(4, np.float32), relu=True)
    with pytest.raises(TypeError, match="bce_with_logits_sum: dtypes differ"):
        bce_with_logits_sum(f32, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"bce_with_logits_sum: cannot apply to shapes \(2, 3\), \(2, 4\)"):
        bce_with_logits_sum(f32, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"reparameterize: eps of shape \(2, 2, 2, 3\) for mu of shape \(2, 3\)"):
        reparameterize(f32, f32, np.zeros((2, 2, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"gaussian_kl: mu \(2, 3\) and logvar \(3,\) must have one shape"):
        gaussian_kl(f32, np.zeros(3, np.float32))


@backends
def test_bce_with_logits_sum_broadcasts_targets_either_way(backend):
    rng = np.random.default_rng(4)
    logits = mv.Tensor(rng.standard_normal((2, 3)) * 4, requires_grad=True)
    for targets in (np.float64(0.25), rng.random(3), rng.random((4, 2, 3))):
        with kernels.use(backend):
            value, (grad,) = values_and_gradients(lambda z: bce_with_logits_sum(z, targets), [logits.data])
        expected, (expected_grad,) = values_and_gradients(lambda z: generic_bce_sum(z, targets), [logits.data])
        np.testing.assert_allclose(value, expected, rtol=1e-12)
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-12)


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_the_same_seed_twice_gives_fresh_gradients_that_the_caller_may_change(backend):
    x = mv.Tensor(np.ones((2, 3)))
    w, b = mv.Tensor(np.ones((4, 3)), requires_grad=True), mv.Tensor(np.zeros(4), requires_grad=True)
    seed = np.ones((2, 4))
    with kernels.use(backend):
        y = dense(x, w, b)
        y.backward(seed)
        b.grad *= 0.5  # the caller owns b.grad: this must not leak into the next backward pass
        b.zero_grad()
        y.backward(seed)
    np.testing.assert_array_equal(b.grad, [2.0, 2.0, 2.0, 2.0])


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_fused_gaussian_ops_take_arrays_in_any_memory_order(backend):
    rng = np.random.default_rng(5)
    mu, logvar = (mv.Tensor(np.asfortranarray(rng.standard_normal((2, 4, 3))), requires_grad=True) for _ in range(2))
    eps = np.transpose(rng.standard_normal((3, 4, 2)), (2, 1, 0))
    with kernels.use(backend):
        assert mv.gradcheck(gaussian_kl, mu, logvar)
        assert mv.gradcheck(lambda m, v: reparameterize(m, v, eps), mu, logvar)
        np.testing.assert_allclose(reparameterize(mu, logvar, eps).data, mu.data + np.exp(0.5 * logvar.data) * eps)


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_an_empty_batch_gives_empty_fused_results(backend):
    empty = np.zeros((0, 3), np.float32)
    with kernels.use(backend):
        assert reparameterize(empty, empty, np.zeros((2, 0, 3), np.float32)).shape == (2, 0, 3)
        assert gaussian_kl(empty, empty).shape == (0,)
        assert bce_with_logits_sum(np.zeros((2, 0, 3), np.float32), empty).shape == (2, 0)
