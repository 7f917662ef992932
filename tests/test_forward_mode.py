"""Forward mode and second-order helpers: ``mv.jvp`` (JAX's signature) and ``mv.hessian``, against closed
forms, against the engine's own Jacobians, and (with torch installed) against ``torch.func`` on random
programs of the engine's ops."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import minivae as mv
from minivae import testing as mvt
from test_programs import torch_call

SOME = settings(max_examples=3 * settings.default.max_examples,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def test_jvp_of_two_arguments_matches_the_closed_form():
    x, y = np.array([0.3, 1.2, -2.0]), np.array([2.0, -1.0, 0.5])
    vx, vy = np.array([1.0, 0.5, -1.0]), np.array([0.2, 0.1, 3.0])
    out, tangent = mv.jvp(lambda a, b: mv.tanh(a) * b, (x, y), (vx, vy))
    np.testing.assert_allclose(out.data, np.tanh(x) * y, rtol=1e-15)
    np.testing.assert_allclose(tangent.data, (1 - np.tanh(x) ** 2) * y * vx + np.tanh(x) * vy, rtol=1e-14)


def test_jvp_keeps_float32_and_the_output_shape():
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    out, tangent = mv.jvp(lambda a: mv.exp(a).sum(axis=1), (x,), (np.ones_like(x),))
    assert out.dtype == tangent.dtype == np.float32 and tangent.shape == (2,)
    np.testing.assert_allclose(tangent.data, np.exp(x).sum(axis=1), rtol=1e-6)


def test_jvp_composes_with_itself_and_with_grad():
    x = np.array([0.3, 1.2])
    def first(z):                                                        # tanh'(z)
        return mv.jvp(mv.tanh, (z,), (np.ones(2),))[1]

    _, second = mv.jvp(first, (x,), (np.ones(2),))                       # tanh''(z)
    np.testing.assert_allclose(second.data, -2 * np.tanh(x) * (1 - np.tanh(x) ** 2), rtol=1e-13)

    def cubic(z):                                                        # Σ 3 z²
        return mv.jvp(lambda w: (w ** 3).sum(), (z,), (np.ones(2),))[1]

    np.testing.assert_allclose(mv.grad(cubic)(x).data, 6 * x, rtol=1e-14)


def test_jvp_of_a_function_that_ignores_its_input_is_zero():
    out, tangent = mv.jvp(lambda a: mv.Tensor(np.ones(3)) * 2.0, (np.zeros(3),), (np.ones(3),))
    np.testing.assert_array_equal(tangent.data, np.zeros(3))


def test_jvp_inside_no_grad_records_nothing():
    with mv.no_grad():
        out, tangent = mv.jvp(mv.exp, (np.array([1.0]),), (np.array([2.0]),))
    assert not out.requires_grad and not tangent.requires_grad
    np.testing.assert_allclose(tangent.data, 2 * np.e)


@pytest.mark.parametrize("primals, tangents, error, match", [
    (np.ones(2), (np.ones(2),), TypeError, "tuples or lists"),
    ((np.ones(2),), (np.ones(2), np.ones(2)), TypeError, "1 primal"),
    ((np.ones(2),), (np.ones(3),), ValueError, "tangent 0 has shape"),
    ((np.ones(2, np.float32),), (np.ones(2),), TypeError, "tangent 0 has dtype float64, its primal float32"),
    ((np.ones(2),), (mv.Tensor(np.ones(2, np.float32)),), TypeError, "tangent 0 has dtype float32, its primal float64"),
])
def test_jvp_refuses_mismatched_arguments(primals, tangents, error, match):
    with pytest.raises(error, match=match):
        mv.jvp(mv.exp, primals, tangents)


def test_hessian_matches_the_closed_form():
    h = mv.hessian(lambda z: (z ** 3).sum() + z[0] * z[1])(np.array([1.0, 2.0]))
    np.testing.assert_allclose(h.data, [[6.0, 1.0], [1.0, 12.0]])
    blocks = mv.hessian(lambda a, b: (a * a * b).sum(), argnums=(0, 1))(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    np.testing.assert_allclose(blocks[0][0].data, np.diag([6.0, 8.0]))
    np.testing.assert_allclose(blocks[0][1].data, np.diag([2.0, 4.0]))
    np.testing.assert_allclose(blocks[1][0].data, np.diag([2.0, 4.0]))
    np.testing.assert_allclose(blocks[1][1].data, np.zeros((2, 2)))


def test_hessian_of_a_matrix_argument_has_twice_its_shape():
    w = np.arange(6.0).reshape(2, 3) / 10
    h = mv.hessian(lambda m: (mv.tanh(m) ** 2).sum())(w)
    assert h.shape == (2, 3, 2, 3)
    t = np.tanh(w)
    diagonal = 2 * (1 - t ** 2) ** 2 - 4 * t ** 2 * (1 - t ** 2)   # d²/dw² tanh(w)²
    np.testing.assert_allclose(h.data.reshape(6, 6), np.diag(diagonal.ravel()), atol=1e-14)


@SOME
@given(mvt.programs())
def test_jvp_is_the_jacobian_times_the_tangent(program):
    rng = np.random.default_rng(1)
    tangents = [rng.standard_normal(np.shape(a)) for a in program.inputs]
    out, tangent = mv.jvp(program, list(program.inputs), tangents)
    expected = np.zeros(out.shape)
    jacobians = mv.jacobian(program, argnums=tuple(range(len(program.inputs))))(*program.inputs)
    for jac, v in zip(jacobians, tangents):
        expected = expected + np.tensordot(jac.data, v, axes=v.ndim)
    np.testing.assert_allclose(tangent.data, expected, rtol=1e-9, atol=1e-11)


def test_jvp_agrees_with_torch_func_jvp_on_random_programs():
    torch = pytest.importorskip("torch")
    call = torch_call(torch)

    @SOME
    @given(mvt.programs())
    def check(program):
        rng = np.random.default_rng(2)
        tangents = [rng.standard_normal(np.shape(a)) for a in program.inputs]
        out, tangent = mv.jvp(program, list(program.inputs), tangents)
        expected_out, expected = torch.func.jvp(lambda *xs: program.run(list(xs), call),
                                                tuple(torch.tensor(a) for a in program.inputs),
                                                tuple(torch.tensor(v) for v in tangents))
        np.testing.assert_allclose(out.data, expected_out.numpy(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(tangent.data, expected.numpy(force=True), rtol=1e-9, atol=1e-11)
    check()


def test_hessian_agrees_with_torch_func_hessian_on_random_programs():
    torch = pytest.importorskip("torch")
    call = torch_call(torch)

    @SOME
    @given(mvt.programs(max_ops=3))
    def check(program):
        first, rest = program.inputs[0], list(program.inputs[1:])
        h = mv.hessian(lambda x: program(x, *rest).sum())(first)
        torch_rest = [torch.tensor(a) for a in rest]
        expected = torch.func.hessian(lambda x: program.run([x, *torch_rest], call).sum())(torch.tensor(first))
        assert h.shape == np.shape(first) * 2
        np.testing.assert_allclose(h.data, expected.numpy(force=True), rtol=1e-8, atol=1e-10)  # may be a ZeroTensor
    check()
