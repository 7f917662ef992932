"""Distributions sampled by their inverse CDF: F⁻¹ inverts F, p = F′, gradients, moments, entropy."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivae as mv
from minivae import testing as mvt
from minivae.distributions import Exponential, Kumaraswamy, Logistic
from minivae.distributions.inverse_cdf import one_minus_exp

# Each distribution with the range its unconstrained parameters are drawn from.
PARAMETER_RANGES = {
    Logistic: {"loc": (-2.0, 2.0), "log_scale": (-1.0, 1.0)},
    Exponential: {"log_rate": (-1.0, 1.0)},
    Kumaraswamy: {"log_a": (-1.0, 1.0), "log_b": (-1.0, 1.0)},
}


@st.composite
def distribution_cases(draw):
    """(class, parameter arrays, u in [0.02, 0.98]) of one shared shape, in float64."""
    cls = draw(st.sampled_from(list(PARAMETER_RANGES)))
    shape = draw(mvt.shapes(min_dims=1, max_dims=2, max_side=3))
    params = {name: draw(mvt.float_arrays(shape, low=low, high=high))
              for name, (low, high) in PARAMETER_RANGES[cls].items()}
    u = draw(mvt.float_arrays(shape, low=0.02, high=0.98))
    return cls, params, u


def build(cls, params, requires_grad=False):
    tensors = {name: mv.Tensor(value, requires_grad=requires_grad, name=name) for name, value in params.items()}
    return cls(**tensors), list(tensors.values())


@given(distribution_cases())
def test_icdf_inverts_cdf(case):
    cls, params, u = case
    q, _ = build(cls, params)
    np.testing.assert_allclose(q.cdf(q.icdf(u)).data, u, rtol=1e-9, atol=1e-12)


@given(distribution_cases())
def test_density_is_the_derivative_of_the_cdf(case):
    cls, params, u = case
    q, _ = build(cls, params)
    z = mv.Tensor(q.icdf(u).data, requires_grad=True)
    q.cdf(z).sum().backward()
    np.testing.assert_allclose(z.grad, np.exp(q.log_density(z.data).data), rtol=1e-9)


@given(distribution_cases())
def test_log_prob_gradients_match_central_differences(case):
    cls, params, u = case
    z = build(cls, params)[0].icdf(u).data
    names = list(params)
    assert mv.gradcheck(lambda *tensors: cls(**dict(zip(names, tensors))).log_prob(z),
                        *(mv.Tensor(params[n], requires_grad=True, name=n) for n in names))


@given(distribution_cases())
def test_pathwise_gradients_match_central_differences(case):
    cls, params, u = case
    names = list(params)
    assert mv.gradcheck(lambda *tensors: cls(**dict(zip(names, tensors))).icdf(u),
                        *(mv.Tensor(params[n], requires_grad=True, name=n) for n in names))


@given(distribution_cases())
def test_pathwise_gradient_is_minus_the_cdf_gradient_over_the_density(case):
    """Differentiating F(F⁻¹(u; θ); θ) = u gives ∂z/∂θ = −(∂F/∂θ)(z; θ) / p(z; θ)."""
    cls, params, u = case
    q, leaves = build(cls, params, requires_grad=True)
    z = q.icdf(u)
    z.sum().backward()
    through_icdf = [leaf.grad for leaf in leaves]
    for leaf in leaves:
        leaf.grad = None
    density = np.exp(q.log_density(z.data).data)
    q.cdf(z.data).backward(1.0 / density)
    for pathwise, leaf in zip(through_icdf, leaves):
        np.testing.assert_allclose(pathwise, -leaf.grad, rtol=1e-7, atol=1e-10, err_msg=leaf.name)


@pytest.mark.parametrize("q, low, high", [
    (Logistic(np.array([0.3]), np.array([-0.4])), -40.0, 40.0),
    (Exponential(np.array([0.5])), 0.0, 60.0),
    (Kumaraswamy(np.array([0.7]), np.array([0.4])), 1e-9, 1 - 1e-9),
], ids=["logistic", "exponential", "kumaraswamy"])
def test_density_integrates_to_one(q, low, high):
    z = np.linspace(low, high, 400_001)[:, None]
    density = np.exp(q.log_density(z).data[:, 0])
    assert np.trapezoid(density, z[:, 0]) == pytest.approx(1.0, abs=2e-4)


def _kumaraswamy_moment(a, b, n):
    """E[zⁿ] = b·B(1 + n/a, b)."""
    return b * math.exp(math.lgamma(1 + n / a) + math.lgamma(b) - math.lgamma(1 + n / a + b))


@pytest.mark.parametrize("q, mean, variance", [
    (Logistic(np.array([0.3, -1.0]), np.array([-0.4, 0.5])),
     np.array([0.3, -1.0]), np.exp(2 * np.array([-0.4, 0.5])) * np.pi ** 2 / 3),
    (Exponential(np.array([0.5, -0.3])), np.exp(-np.array([0.5, -0.3])), np.exp(-2 * np.array([0.5, -0.3]))),
    (Kumaraswamy(np.array([0.7, -0.2]), np.array([-0.6, 0.4])),
     np.array([_kumaraswamy_moment(np.exp(a), np.exp(b), 1) for a, b in ((0.7, -0.6), (-0.2, 0.4))]),
     np.array([_kumaraswamy_moment(np.exp(a), np.exp(b), 2) - _kumaraswamy_moment(np.exp(a), np.exp(b), 1) ** 2
               for a, b in ((0.7, -0.6), (-0.2, 0.4))])),
], ids=["logistic", "exponential", "kumaraswamy"])
def test_samples_have_the_textbook_mean_and_variance(q, mean, variance):
    n = 40_000
    z = q.rsample(np.random.default_rng(1), samples=n).data
    assert z.shape == (n, 2)
    standard_error = np.sqrt(variance / n)
    assert np.all(np.abs(z.mean(axis=0) - mean) < 5 * standard_error)
    # the sample variance's standard error, from the fourth central moment
    fourth = ((z - mean) ** 4).mean(axis=0)
    assert np.all(np.abs(z.var(axis=0) - variance) < 5 * np.sqrt((fourth - variance ** 2) / n))


@pytest.mark.parametrize("q", [Logistic(np.array([0.3, -1.0]), np.array([-0.4, 0.5])),
                               Exponential(np.array([0.5, -0.3]))], ids=["logistic", "exponential"])
def test_entropy_is_the_expected_negative_log_density(q):
    n = 40_000
    negative_log_q = -q.log_prob(q.rsample(np.random.default_rng(2), samples=n)).data
    assert abs(negative_log_q.mean() - q.entropy().item()) < 5 * negative_log_q.std() / np.sqrt(n)


@pytest.mark.parametrize("cls", list(PARAMETER_RANGES))
def test_float32_samples_stay_finite_and_float32_at_the_edges_of_the_unit_interval(cls):
    q = cls(*(np.zeros(3, np.float32) for _ in PARAMETER_RANGES[cls]))
    u = q.uniform(np.random.default_rng(3), samples=10_000)
    assert u.dtype == np.float32 and u.min() > 0 and u.max() < 1
    info = np.finfo(np.float32)
    extremes = np.array([info.tiny, 1 - info.epsneg], np.float32)
    z = cls(*(np.zeros(2, np.float32) for _ in PARAMETER_RANGES[cls])).icdf(extremes)
    assert z.dtype == np.float32 and np.isfinite(z.data).all()
    assert q.rsample(np.random.default_rng(3)).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_minus_exp_keeps_its_relative_precision_near_zero(dtype):
    y = -np.logspace(-30, 2, 200).astype(dtype)
    np.testing.assert_allclose(one_minus_exp(y).data, -np.expm1(y), rtol=4 * np.finfo(dtype).eps)


def test_rsample_reaches_every_parameter():
    loc = mv.Tensor(np.zeros((4, 2)), requires_grad=True)
    log_scale = mv.Tensor(np.zeros(2), requires_grad=True)
    z = Logistic(loc, log_scale).rsample(np.random.default_rng(0), samples=5)
    assert z.shape == (5, 4, 2)
    z.sum().backward()
    assert loc.grad.shape == (4, 2) and log_scale.grad.shape == (2,) and np.all(log_scale.grad != 0)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError,
                       match=r"Logistic: parameter shapes do not broadcast \(loc \(3,\), log_scale \(2,\)\)"):
        Logistic(np.zeros(3), np.zeros(2))
    with pytest.raises(TypeError, match="Kumaraswamy: parameters have different dtypes"):
        Kumaraswamy(np.zeros(2, np.float32), np.zeros(2))
    with pytest.raises(TypeError, match="Exponential: log_rate must be floating-point"):
        Exponential(np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="Exponential.rsample: samples must be a positive int"):
        Exponential(np.zeros(2)).rsample(np.random.default_rng(0), samples=0)


# ---------------------------------------------------------------- both tails, against 50-digit references
TAIL_FAMILIES = {  # each family with parameters, and its F and F⁻¹ in mpmath
    "Logistic": (Logistic, {"loc": 0.0, "log_scale": 0.3},
                 lambda mp, z, p: 1 / (1 + mp.exp(-z / mp.exp(p["log_scale"]))),
                 lambda mp, u, p: mp.exp(p["log_scale"]) * mp.log(u / (1 - u))),
    "Exponential": (Exponential, {"log_rate": 0.2},
                    lambda mp, z, p: -mp.expm1(-mp.exp(p["log_rate"]) * z),
                    lambda mp, u, p: -mp.log1p(-u) / mp.exp(p["log_rate"])),
    "Kumaraswamy": (Kumaraswamy, {"log_a": 0.4, "log_b": -0.3},
                    lambda mp, z, p: -mp.expm1(mp.exp(p["log_b"]) * mp.log1p(-z ** mp.exp(p["log_a"]))),
                    lambda mp, u, p: (-mp.expm1(mp.log1p(-u) / mp.exp(p["log_b"]))) ** (1 / mp.exp(p["log_a"]))),
}
# (points z for F, points u for F⁻¹) deep in both tails of each family, per dtype (Kumaraswamy's zᵃ kept
# above the subnormals, where no value has its relative precision)
TAIL_POINTS = {
    ("Logistic", np.float32): ([-80.0, -30.0, -5.0, 5.0, 30.0], [1e-30, 1e-8, 0.5, 1 - 2 ** -20, 1 - 2 ** -24]),
    ("Logistic", np.float64): ([-700.0, -100.0, -5.0, 5.0, 30.0], [1e-300, 1e-20, 0.5, 1 - 2 ** -40, 1 - 2 ** -53]),
    ("Exponential", np.float32): ([1e-30, 1e-6, 1.0, 10.0], [1e-30, 1e-6, 0.5, 1 - 2 ** -24]),
    ("Exponential", np.float64): ([1e-300, 1e-20, 1.0, 30.0], [1e-300, 1e-20, 0.5, 1 - 2 ** -53]),
    ("Kumaraswamy", np.float32): ([1e-20, 1e-6, 0.5, 1 - 2 ** -20, 1 - 2 ** -24], [1e-30, 1e-6, 0.5, 1 - 2 ** -24]),
    ("Kumaraswamy", np.float64): ([1e-150, 1e-20, 0.5, 1 - 2 ** -40, 1 - 2 ** -53],
                                  [1e-300, 1e-20, 0.5, 1 - 2 ** -53]),
}


def relative_errors(ours: np.ndarray, exact: list) -> np.ndarray:
    exact = np.array([float(e) for e in exact])
    difference = np.abs(ours.astype(np.float64) - exact)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(difference == 0, 0.0, difference / np.abs(exact))


@pytest.mark.parametrize("family, dtype", sorted(TAIL_POINTS, key=str))
def test_cdf_and_icdf_keep_their_relative_precision_in_both_tails(family, dtype):
    """Kumaraswamy's F(1e-20) was −0.0 in float64 (true 6.7e-28 for a = b = 1) and F(1e-6) 7.5 times too
    large in float32: log(1 − zᵃ) needs the log1mexp split. The error allowed grows with |log| of the
    point, the condition number of the power zᵃ = exp(a log z) and of the logit."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    cls, params, cdf, icdf = TAIL_FAMILIES[family]
    q = cls(**{name: np.asarray(v, dtype) for name, v in params.items()})
    exact_params = {name: mp.mpf(float(np.asarray(v, dtype))) for name, v in params.items()}
    eps = np.finfo(dtype).eps
    z_points, u_points = (np.array(points, dtype) for points in TAIL_POINTS[family, dtype])
    for points, ours, exact in ((z_points, q.cdf, cdf), (u_points, q.icdf, icdf)):
        with np.errstate(all="ignore"):
            values = ours(mv.Tensor(points)).data
        assert values.dtype == dtype
        references = [exact(mp, mp.mpf(float(p)), exact_params) for p in points]
        allowed = 32 * eps * (1 + np.abs(np.log(np.abs(points.astype(np.float64)))))
        errors = relative_errors(values, references)
        assert (errors <= allowed).all(), (f"{ours.__name__} at {points.tolist()}: relative errors {errors.tolist()}, "
                                           f"allowed {allowed.tolist()}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kumaraswamy_lower_tail_of_the_issue(dtype):
    """The two values of the report, for a = b = 1 (the uniform: F(z) = z)."""
    q = Kumaraswamy(np.zeros(1, dtype), np.zeros(1, dtype))
    for z in (1e-20, 1e-6, 1e-30):
        np.testing.assert_allclose(q.cdf(mv.Tensor(np.array([z], dtype))).data, [z], rtol=64 * np.finfo(dtype).eps)


def test_log_one_minus_exp_is_exact_and_differentiable_on_both_sides_of_its_split():
    from minivae.distributions.inverse_cdf import log_one_minus_exp
    y = np.array([-1e-12, -1e-3, -0.5, -0.6931, -0.6932, -2.0, -40.0, -700.0])
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    exact = [float(mp.log1p(-mp.exp(mp.mpf(float(v))))) for v in y]
    np.testing.assert_allclose(log_one_minus_exp(y), exact, rtol=1e-14)
    assert mv.gradcheck(log_one_minus_exp, y[1:-1])
    assert mv.gradcheck(log_one_minus_exp, y[1:-1], order=2, rtol=1e-3)
    with np.errstate(all="raise"):
        x = mv.Tensor(y, requires_grad=True)
        log_one_minus_exp(x).sum().backward()
    np.testing.assert_allclose(x.grad, -1 / np.expm1(-y), rtol=1e-12)
