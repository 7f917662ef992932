"""The backend switch, and the Adam kernel against its NumPy reference, extreme inputs included.

(The fused ops are held to the compositions they implement in test_functions.py.)

Agreement is |numba − numpy| ≤ rtol · scale elementwise, rtol = 1e-5 for float32 and 1e-12 for
float64, where ``scale`` is the size of the terms that make up the value (|a| + |b| for a + b, and
the sum of such sizes for a sum): the rounding error of any order of evaluation is bounded by it,
while a bare relative error is not (e.g. ½(μ² + σ² − 1 − log σ²) for σ² ≈ 1 cancels).
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minivae import kernels, optim
from minivae import testing as mvt

RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def assert_agree(actual, expected, scale):
    assert actual.dtype == expected.dtype
    rtol = RTOL[expected.dtype]
    difference = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    bound = rtol * np.asarray(scale, np.float64)
    assert (difference <= bound).all(), f"worst excess {np.max(difference - bound)} (rtol {rtol})"


def run_both(kernel, inputs, outputs):
    """The kernel's outputs on each backend, from copies of ``outputs`` (in-place kernels update them)."""
    results = {}
    for backend in kernels.BACKENDS:
        copies = [o.copy() for o in outputs]
        with kernels.use(backend):
            kernel(*inputs, *copies)
        results[backend] = copies
    return results["numba"], results["reference"]


def with_extremes(values: st.SearchStrategy, extremes) -> st.SearchStrategy:
    """Floats from ``values``, or now and then one of the ``extremes``."""
    return st.one_of(values, st.sampled_from(extremes))


def arrays(shape, dtype, elements):
    return hnp.arrays(np.float64, shape, elements=elements).map(lambda a: a.astype(dtype))


matrix_shapes = mvt.shapes(min_dims=2, max_dims=2, max_side=9)


@st.composite
def matrices(draw, count, low=-3.0, high=3.0, extremes=()):
    """(dtype, [count arrays of one 2-D shape])."""
    dtype, shape = draw(mvt.float_dtypes()), draw(matrix_shapes)
    elements = with_extremes(st.floats(low, high, allow_subnormal=False), extremes) if extremes else None
    strategy = arrays(shape, dtype, elements) if extremes else mvt.float_arrays(shape, dtype, low, high)
    return dtype, [draw(strategy) for _ in range(count)]


# ------------------------------------------------------------------------ the switch
def test_use_switches_the_backend_and_restores_it():
    before = kernels.active()
    with kernels.use("reference"):
        assert kernels.active() == "reference"
        with kernels.use("numba"):
            assert kernels.active() == "numba"
    assert kernels.active() == before
    with pytest.raises(ValueError, match="minivae.kernels.use: unknown kernel backend 'cuda'; expected one of numba, "
                                         "reference"):
        with kernels.use("cuda"):
            pass


@pytest.mark.parametrize("value, expected", [("reference", "reference"), ("numba", "numba"), ("", "numba")])
def test_the_environment_variable_chooses_the_backend_at_import(value, expected):
    env = {**os.environ, kernels.ENV_VAR: value}
    done = subprocess.run([sys.executable, "-c", "import minivae.kernels as k; print(k.active())"], env=env,
                          capture_output=True, text=True, check=True)
    without_numba = kernels.backend.numba is None  # the documented fallback: the references, with a warning
    assert done.stdout.strip() == ("reference" if without_numba else expected)


@pytest.mark.parametrize("value", ["fortran", "numpy"])
def test_an_unknown_backend_in_the_environment_fails_at_the_first_function_naming_the_variable(value):
    env = {**os.environ, kernels.ENV_VAR: value}
    probe = "import minivae as mv; mv.functions.linear(mv.Tensor([[1.0]]), [[2.0]], [0.5])"
    done = subprocess.run([sys.executable, "-c", probe],
                          env=env, capture_output=True, text=True)
    assert done.returncode != 0 and f"MINIVAE_KERNELS (environment): unknown kernel backend '{value}'" in done.stderr


# ------------------------------------------------------------------------ Adam
@given(mvt.float_dtypes(), st.integers(1, 200), st.sampled_from([0.0, 0.01]), st.integers(1, 40),
       st.sampled_from([1e-8, 1e-3]))
def test_adam_update_backends_agree(dtype, size, weight_decay, step, eps):
    rng = np.random.default_rng(size)
    param = rng.standard_normal(size).astype(dtype)
    grad = (rng.standard_normal(size) * 10 ** rng.uniform(-6, 2, size)).astype(dtype)
    m, v = (rng.standard_normal(size) * 0.1).astype(dtype), (rng.random(size) * 0.01).astype(dtype)
    states = {}
    for backend in ("numba", "reference"):
        state = [a.copy() for a in (param, m, v)]
        with kernels.use(backend):
            optim.adam_update(state[0], grad, state[1], state[2], step, 1e-3, 0.9, 0.999, eps, weight_decay)
        states[backend] = state
    g = np.abs(grad.astype(np.float64)) + weight_decay * np.abs(param)
    scales = [np.abs(param) + 1e-3 * (1 + np.abs(states["reference"][1]) / eps),
              0.9 * np.abs(m) + 0.1 * g, 0.999 * np.abs(v) + 0.001 * g * g]
    for fast, reference, scale in zip(states["numba"], states["reference"], scales):
        assert_agree(fast, reference, scale)


def test_adam_update_follows_algorithm_1_and_keeps_the_dtype():
    param, grad = np.array([1.0, -2.0], np.float32), np.array([0.5, -0.25], np.float32)
    m, v = np.zeros(2, np.float32), np.zeros(2, np.float32)
    optim.adam_update(param, grad, m, v, 1, 0.1, 0.9, 0.999, 1e-8)
    assert param.dtype == m.dtype == v.dtype == np.float32
    np.testing.assert_allclose(param, [0.9, -1.9], rtol=1e-6)  # the first step has size lr
    np.testing.assert_allclose(m, 0.1 * grad, rtol=1e-6)


def test_adam_update_accepts_non_contiguous_arrays_through_the_reference():
    param = np.arange(12, dtype=np.float64).reshape(3, 4).T
    expected = param.copy()
    optim.adam_update(expected, np.ones((4, 3)), np.zeros((4, 3)), np.zeros((4, 3)), 1, 0.5, 0.9, 0.999, 1e-8)
    optim.adam_update(param, np.ones((4, 3)), np.zeros((4, 3)), np.zeros((4, 3)), 1, 0.5, 0.9, 0.999, 1e-8)
    np.testing.assert_allclose(param, expected)


def test_adam_update_errors_name_the_function_and_the_arrays():
    f32, f64 = np.zeros(3, np.float32), np.zeros(3)
    with pytest.raises(ValueError, match=r"adam_update: param, grad, m and v need one shape and dtype, got "
                                         r"param \(3,\) float32, grad \(3,\) float64"):
        optim.adam_update(f32, f64, f32.copy(), f32.copy(), 1, 1e-3, 0.9, 0.999, 1e-8)
    with pytest.raises(ValueError, match="adam_update: step counts from 1, got 0"):
        optim.adam_update(f64, f64.copy(), f64.copy(), f64.copy(), 0, 1e-3, 0.9, 0.999, 1e-8)


@pytest.mark.parametrize("backend", kernels.BACKENDS)
def test_adam_second_moment_of_a_huge_finite_gradient_stays_finite_in_float32(backend):
    # g = 1e20: g² = 1e40 overflows float32, (1 - β₂)·g² = 1e37 does not; PyTorch's update stays finite too
    param, grad = np.array([1.0, -1.0, 0.5], np.float32), np.array([1e20, -3e20, 1.0], np.float32)
    m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
    with kernels.use(backend):
        optim.adam_update(param, grad, m, v, 1, 0.1, 0.9, 0.999, 1e-8)
        assert np.isfinite(v).all() and np.isfinite(param).all()
        np.testing.assert_allclose(v, 0.001 * grad.astype(np.float64) ** 2, rtol=2e-5)  # 1 - β₂ in float32
        np.testing.assert_allclose(param, [0.9, -0.9, 0.4], rtol=1e-5)  # the first step has size lr
        optim.adam_update(param, np.zeros(3, np.float32), m, v, 2, 0.1, 0.9, 0.999, 1e-8)
    assert np.isfinite(param).all() and (param != [0.9, -0.9, 0.4]).all()  # not frozen: it keeps moving


# ------------------------------------------------------------------------ the cross-entropy's float32 functions
def test_the_float32_exponential_and_log1p_of_the_cross_entropy_are_within_3_ulp_on_a_dense_grid():
    """exp_nonpositive on [−87, 0] (and 0 below, NaN for NaN) and log1p_unit on [0, 1], against float64."""
    numba = pytest.importorskip("numba")
    from minivae.kernels import losses

    @numba.njit
    def apply(function, x, out):
        for i in range(x.size):
            out[i] = function(x[i])

    def ulps(actual, exact):
        return np.abs(actual - exact) / np.spacing(exact.astype(np.float32)).astype(np.float64)

    x = np.concatenate([-np.linspace(0, 87, 2_000_001, dtype=np.float32), -np.logspace(-30, 0, 1000, dtype=np.float32)])
    e = np.empty_like(x)
    apply(losses.exp_nonpositive, x, e)
    assert e.dtype == np.float32 and ulps(e, np.exp(x.astype(np.float64))).max() <= 1.5
    special = np.array([-87.5, -1e4, -np.inf, np.nan, -0.0], np.float32)
    out = np.empty_like(special)
    apply(losses.exp_nonpositive, special, out)
    np.testing.assert_array_equal(out, [0, 0, 0, np.nan, 1])

    u = np.concatenate([np.linspace(0, 1, 2_000_001, dtype=np.float32), np.logspace(-45, 0, 1000).astype(np.float32)])
    log1p = np.empty_like(u)
    apply(losses.log1p_unit, u, log1p)
    exact = np.log1p(u.astype(np.float64))
    assert log1p[u == 0].tolist() == [0.0] and ulps(log1p[u > 0], exact[u > 0]).max() <= 3


def test_a_warm_captured_step_with_multi_megabyte_temporaries_faults_in_no_fresh_pages():
    """With glibc, the captured step keeps freed arrays in the heap (kernels.backend.keep_freed_arrays_in_heap):
    the S × batch × 784 logits and their gradient (4 MB each at S = 10) reuse the last step's pages."""
    import platform
    import resource

    import minivae as mv
    from minivae.capture import capture_step
    if not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"):
        pytest.skip("glibc's malloc only")
    model = mv.VAE(784, (400,), 20, rng=0)
    optimizer = mv.Adam(model.parameters())
    step = capture_step(model, optimizer, lambda x, rng: model.negative_elbo(x, rng, samples=10))
    x, rng = (np.random.default_rng(0).random((128, 784)) < 0.13).astype(np.float32), np.random.default_rng(0)
    for _ in range(3):
        step(x, rng)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        step(x, rng)
    assert kernels.backend.keep_freed_arrays_in_heap()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 100  # 3,408 per step without


@pytest.mark.skipif(kernels.backend.numba is None, reason="the compiled kernels need Numba")
@given(mvt.float_dtypes(), st.integers(1, 70), st.integers(1, 70), st.data())
def test_bias_add_and_scale_rows_round_each_value_once_as_numpy(dtype, rows, cols, data):
    """The decoder's bias add and the cross-entropy's backward scaling equal NumPy's ``+`` and ``*`` bit for bit,
    in place too (odd sizes cover the vectorized loops' tails)."""
    from minivae.kernels import activations, losses
    finite = st.floats(-1e15, 1e15, allow_nan=False)
    pre = data.draw(arrays((rows, cols), dtype, finite))
    bias = data.draw(arrays((cols,), dtype, finite))
    g = data.draw(arrays((rows,), dtype, finite))
    out = np.empty_like(pre)
    activations.bias_add(pre, bias, out)
    assert out.tobytes() == (pre + bias).tobytes()
    in_place = pre.copy()
    activations.bias_add(in_place, bias, in_place)
    assert in_place.tobytes() == (pre + bias).tobytes()
    losses.scale_rows(g, pre, out)
    assert out.tobytes() == (g[:, None] * pre).tobytes()


@pytest.mark.parametrize("dtype", [np.dtype(np.float16), np.dtype(">f4")])
@pytest.mark.parametrize("name", ["linear", "linear_relu", "bernoulli_log_prob", "gaussian_rsample",
                                  "kl_to_standard_normal"])
def test_dtypes_the_kernels_cannot_type_run_the_composition(name, dtype):
    """The compiled kernels take native float32 and float64; a float16 tensor gets the composition's numbers on
    the numba backend too, and a byte-swapped one the composition's clear error, not Numba's typing error."""
    import minivae as mv
    from minivae import functions
    rng = np.random.default_rng(0)
    shapes = {"linear": [(2, 3), (4, 3), (4,)], "linear_relu": [(2, 3), (4, 3), (4,)],
              "bernoulli_log_prob": [(2, 3), (2, 3)], "gaussian_rsample": [(2, 3)] * 3,
              "kl_to_standard_normal": [(2, 3), (2, 3)]}[name]

    def run(backend):
        args = [mv.Tensor(rng_values.astype(dtype), requires_grad=True) for rng_values in values]
        with kernels.use(backend):
            out = getattr(functions, name)(*args)
            out.sum().backward()
        return [out.data, *(a.grad for a in args)]
    values = [rng.random(shape) for shape in shapes]
    if dtype.byteorder == ">":
        for backend in kernels.BACKENDS:
            with pytest.raises(TypeError, match="dtypes differ"):
                run(backend)
        return
    for fused, reference in zip(run("numba"), run("reference")):
        assert fused.dtype == reference.dtype and np.array_equal(fused, reference)
