"""minivae.distributions against float64 reference formulas and Monte Carlo estimates."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import minivae as mv
from minivae.distributions import Bernoulli, DiagonalGaussian, GaussianLikelihood, StandardNormal
from minivae.nn import Parameter


def gaussian_log_density(z, mu, var):
    """Σ_j log[(2π var_j)^(-1/2) exp(−(z_j − mu_j)² / (2 var_j))], written out directly."""
    return np.sum(np.log(np.exp(-(z - mu) ** 2 / (2 * var)) / np.sqrt(2 * np.pi * var)), axis=-1)


def random_gaussian(rng, shape, dtype=np.float64):
    return DiagonalGaussian(rng.standard_normal(shape).astype(dtype), rng.uniform(-1.5, 1.0, shape).astype(dtype))


values = st.floats(-2.0, 2.0)
triples = hnp.array_shapes(min_dims=1, max_dims=3, max_side=4).flatmap(
    lambda shape: st.tuples(*(hnp.arrays(np.float64, shape, elements=values) for _ in range(3))))


@given(triples)
def test_gaussian_log_prob_and_entropy_match_direct_formulas(arrays):
    mu, logvar, z = arrays
    q = DiagonalGaussian(mu, logvar)
    np.testing.assert_allclose(q.log_prob(z).data, gaussian_log_density(z, mu, np.exp(logvar)), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(q.entropy().data, np.sum(0.5 * np.log(2 * np.pi * np.e * np.exp(logvar)), axis=-1),
                               rtol=1e-10, atol=1e-10)


@given(triples)
def test_kl_closed_forms_match_direct_formulas(arrays):
    mu, logvar, other_mu = arrays
    q = DiagonalGaussian(mu, logvar)
    var = np.exp(logvar)
    # KL(N(m1, v1) ‖ N(m2, v2)) = ½ [log(v2/v1) + (v1 + (m1 − m2)²)/v2 − 1], per coordinate
    to_prior = np.sum(0.5 * (-np.log(var) + var + mu ** 2 - 1), axis=-1)
    np.testing.assert_allclose(q.kl_divergence().data, to_prior, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(q.kl_divergence(StandardNormal(mu.shape[-1], np.float64)).data, to_prior,
                               rtol=1e-10, atol=1e-10)
    other_var = np.exp(0.5 * logvar[::-1])
    p = DiagonalGaussian(other_mu, np.log(other_var))
    between = np.sum(0.5 * (np.log(other_var / var) + (var + (mu - other_mu) ** 2) / other_var - 1), axis=-1)
    np.testing.assert_allclose(q.kl_divergence(p).data, between, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(q.kl_divergence(q).data, 0.0, atol=1e-12)
    assert (q.kl_divergence(p).data >= -1e-12).all()


def test_kl_between_gaussians_matches_monte_carlo_within_its_standard_error():
    rng = np.random.default_rng(0)
    q, p = random_gaussian(rng, (3, 4)), random_gaussian(rng, (3, 4))
    z = q.sample(rng, samples=200_000)
    log_ratio = (q.log_prob(z) - p.log_prob(z)).data  # (samples, 3): KL = E_q[log q − log p]
    estimate = log_ratio.mean(axis=0)
    standard_error = log_ratio.std(axis=0) / np.sqrt(len(log_ratio))
    assert (np.abs(q.kl_divergence(p).data - estimate) < 4 * standard_error).all()
    entropy_estimate = -q.log_prob(z).data.mean(axis=0)
    entropy_error = q.log_prob(z).data.std(axis=0) / np.sqrt(len(log_ratio))
    assert (np.abs(q.entropy().data - entropy_estimate) < 4 * entropy_error).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rsample_shapes_dtype_and_moments(dtype):
    rng = np.random.default_rng(1)
    q = random_gaussian(rng, (2, 3), dtype)
    assert q.rsample(rng).shape == (2, 3)
    z = q.rsample(rng, samples=100_000)
    assert z.shape == (100_000, 2, 3) and z.dtype == dtype
    std = np.exp(0.5 * q.logvar.data.astype(np.float64))
    mean_error = np.abs(z.data.mean(axis=0) - q.mu.data) / (std / np.sqrt(100_000))
    assert (mean_error < 4).all()
    np.testing.assert_allclose(z.data.std(axis=0), std, rtol=0.02)


def test_rsample_is_reproducible_and_differentiable():
    rng = np.random.default_rng(2)
    mu, logvar = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    np.testing.assert_array_equal(DiagonalGaussian(mu, logvar).rsample(5).data,
                                  DiagonalGaussian(mu, logvar).rsample(np.random.default_rng(5)).data)
    weights = rng.standard_normal((4, 2, 3))

    def objective(mu, logvar):  # a fixed seed gives the same ε on every call
        return (DiagonalGaussian(mu, logvar).rsample(11, samples=4) ** 2 * weights).sum()
    assert mv.gradcheck(objective, mu, logvar)
    q = DiagonalGaussian(mv.Tensor(mu, requires_grad=True), logvar)
    assert q.rsample(0).requires_grad and not q.sample(0).requires_grad


def test_reparameterized_gradient_is_the_gradient_of_the_expectation():
    """d/dmu E[z²] = 2 mu and d/dlogvar E[z²] = σ², since E[z²] = mu² + σ²."""
    mu = mv.Tensor(np.array([0.5, -1.0]), requires_grad=True)
    logvar = mv.Tensor(np.array([0.3, -0.7]), requires_grad=True)
    z = DiagonalGaussian(mu, logvar).rsample(3, samples=200_000)
    (z * z).mean(axis=0).sum().backward()
    np.testing.assert_allclose(mu.grad, 2 * mu.data, atol=0.02)
    np.testing.assert_allclose(logvar.grad, np.exp(logvar.data), rtol=0.02)


def test_log_prob_scores_samples_against_batched_parameters():
    rng = np.random.default_rng(3)
    q = random_gaussian(rng, (5, 2))
    z = q.sample(rng, samples=3)
    assert q.log_prob(z).shape == (3, 5)
    np.testing.assert_allclose(q.log_prob(z).data[1], q.log_prob(z.data[1]).data)


def test_standard_normal():
    z = np.random.default_rng(4).standard_normal((6, 3))
    prior = StandardNormal(3, np.float64)
    np.testing.assert_allclose(prior.log_prob(z).data, -0.5 * np.sum(np.log(2 * np.pi) + z ** 2, axis=-1))
    assert prior.sample(0, samples=7).shape == (7, 3)
    assert StandardNormal(3).sample(0).dtype == np.float32


def test_gaussian_errors():
    with pytest.raises(ValueError, match=r"DiagonalGaussian: logvar of shape \(3,\) does not broadcast"):
        DiagonalGaussian(np.zeros((2, 2)), np.zeros(3))
    with pytest.raises(TypeError, match="DiagonalGaussian: logvar has dtype float32, expected float64"):
        DiagonalGaussian(np.zeros(2), np.zeros(2, np.float32))
    q = DiagonalGaussian(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"log_prob: z of shape \(2, 4\) does not end with the event size 3"):
        q.log_prob(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="samples must be a positive int"):
        q.rsample(0, samples=0)
    with pytest.raises(TypeError, match="kl_divergence: other must be a DiagonalGaussian"):
        q.kl_divergence(np.zeros(3))
    with pytest.raises(ValueError, match="StandardNormal: size must be a positive int"):
        StandardNormal(0)


@given(hnp.array_shapes(min_dims=1, max_dims=3, max_side=4).flatmap(
    lambda shape: st.tuples(hnp.arrays(np.float64, shape, elements=st.floats(-8, 8)),
                            hnp.arrays(np.float64, shape, elements=st.floats(0, 1)))))
def test_bernoulli_log_prob_matches_direct_formula(pair):
    logits, x = pair
    p = 1 / (1 + np.exp(-logits))
    expected = np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=-1)
    np.testing.assert_allclose(Bernoulli(logits).log_prob(x).data, expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(Bernoulli(logits).probs.data, p, rtol=1e-12)


def test_bernoulli_is_finite_for_extreme_logits_and_differentiable():
    logits = np.array([[-800.0, 800.0, 0.0]])
    log_p = Bernoulli(logits).log_prob(np.array([[1.0, 0.0, 1.0]])).data
    np.testing.assert_allclose(log_p, [-1600.0 - np.log(2)])
    rng = np.random.default_rng(5)
    x = rng.random((3, 2, 4))
    assert mv.gradcheck(lambda logits: Bernoulli(logits).log_prob(x).sum(), rng.standard_normal((2, 4)) * 3)


def test_bernoulli_samples_follow_probs():
    logits = np.array([-2.0, 0.0, 1.5], np.float32)
    draws = Bernoulli(np.tile(logits, (20_000, 1))).sample(6).data
    assert draws.dtype == np.float32 and set(np.unique(draws)) <= {0.0, 1.0}
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    assert (np.abs(draws.mean(axis=0) - p) < 4 * np.sqrt(p * (1 - p) / 20_000)).all()


def test_bernoulli_errors():
    with pytest.raises(TypeError, match="Bernoulli.log_prob: x has dtype float64, expected float32"):
        Bernoulli(np.zeros((2, 3), np.float32)).log_prob(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"Bernoulli.log_prob: x of shape \(2, 2\) does not end with the event size 3"):
        Bernoulli(np.zeros((2, 3))).log_prob(np.zeros((2, 2)))
    with pytest.raises(TypeError, match="Bernoulli: logits must be floating-point"):
        Bernoulli(np.zeros(3, np.int64))


def test_gaussian_likelihood_with_fixed_and_learned_log_variance():
    rng = np.random.default_rng(7)
    mean, x = rng.standard_normal((50, 4)), rng.standard_normal((50, 4)) * 2
    fixed = GaussianLikelihood(mean, logvar=0.5).log_prob(x).data
    np.testing.assert_allclose(fixed, gaussian_log_density(x, mean, np.exp(0.5)))
    # The maximum-likelihood variance per dimension is the mean squared residual: there the gradient vanishes.
    best = np.log(np.mean((x - mean) ** 2, axis=0))
    logvar = Parameter(best.copy())
    GaussianLikelihood(mean, logvar).log_prob(x).sum().backward()
    assert logvar.grad.shape == (4,)
    np.testing.assert_allclose(logvar.grad, 0.0, atol=1e-10)
    shared = Parameter(np.array(0.0))
    GaussianLikelihood(mean, shared).log_prob(x).sum().backward()
    expected = 0.5 * np.sum((x - mean) ** 2) - 0.5 * x.size  # d/dlogvar of Σ −½[logvar + r² e^(−logvar)]
    np.testing.assert_allclose(shared.grad, expected, rtol=1e-10)


# ---------------------------------------------------------------- Gaussians at extreme log-variances
# (log σ², log s², c): the other Gaussian's variance s² = e^(log s²), this one's σ² = e^(log σ²), and the
# means differ by c standard deviations of the other, so every closed form has a small exact value.
EXTREME_GAUSSIANS = {
    np.float32: [(100.0, 100.0, 0.0), (100.0, 99.0, 0.5), (-100.0, -101.0, 0.0), (-100.0, -99.0, 2.0),
                 (150.0, 150.5, 1.0), (-150.0, -150.0, 0.0), (-250.0, -250.0, 0.0), (-250.0, -249.0, 0.0),
                 (250.0, 250.0, 0.0), (88.7, 89.0, 0.0), (-88.7, -89.0, 0.0)],
    np.float64: [(800.0, 800.0, 0.0), (800.0, 799.0, 0.5), (-800.0, -801.0, 1.0), (-800.0, -799.0, 0.0),
                 (1400.0, 1401.0, 3.0), (-1600.0, -1600.0, 0.0), (-1600.0, -1599.0, 0.0), (1600.0, 1600.0, 0.0)],
}
EXTREME_CASES = [(dtype, case) for dtype, cases in EXTREME_GAUSSIANS.items() for case in cases]


def extreme_pair(dtype, logvar, other_logvar, c):
    """Tensors (mu, logvar, other_mu, other_logvar) of shape (1, 2) with other_mu = 0 and mu = c·s, and
    d = log σ² − log s² from the log-variances as rounded to ``dtype``."""
    mu = c * np.exp(0.5 * np.float64(other_logvar)) if c else 0.0
    assert np.isfinite(np.asarray(mu, dtype)) and (np.asarray(mu, dtype) != 0) == (c != 0)
    tensors = [np.full((1, 2), a, dtype) for a in (mu, logvar, 0.0, other_logvar)]
    d = np.float64(tensors[1][0, 0]) - np.float64(tensors[3][0, 0])
    return [mv.Tensor(t, requires_grad=True) for t in tensors], d


def over(dtype, *logvars) -> str:
    """Overflow is an error, unless a standard deviation σ = exp(½ log σ²) is itself beyond the dtype's range."""
    return "ignore" if max(logvars) / 2 > np.log(np.finfo(dtype).max) else "raise"


@pytest.mark.parametrize("dtype, case", EXTREME_CASES)
def test_kl_between_gaussians_is_exact_at_extreme_log_variances(dtype, case):
    """½ Σ (e^d − d − 1 + c²) with d = log σ² − log s²: never e^(log σ²) and e^(−log s²) formed apart
    (float32 beyond ±88 gave inf, float64 at ±800 NaN)."""
    logvar, other_logvar, c = case
    (mu, lv, other_mu, other_lv), d = extreme_pair(dtype, logvar, other_logvar, c)
    with np.errstate(over=over(dtype, logvar, other_logvar), invalid="raise", divide="raise"):
        kl = DiagonalGaussian(mu, lv).kl_divergence(DiagonalGaussian(other_mu, other_lv))
        kl.sum().backward()
    assert kl.dtype == dtype
    np.testing.assert_allclose(kl.data, [np.expm1(d) - d + c * c], rtol=64 * np.finfo(dtype).eps, atol=1e-30)
    np.testing.assert_allclose(lv.grad, 0.5 * np.expm1(d) * np.ones((1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(other_lv.grad, -0.5 * (np.expm1(d) + c * c) * np.ones((1, 2)), rtol=1e-5, atol=1e-6)
    assert np.isfinite(mu.grad).all() and np.isfinite(other_mu.grad).all()


@pytest.mark.parametrize("dtype, case", EXTREME_CASES)
def test_log_prob_entropy_and_rsample_at_extreme_log_variances(dtype, case):
    logvar, _, c = case
    (x, lv, mu, _), _ = extreme_pair(dtype, logvar, logvar, c)  # x − μ = c·σ
    with np.errstate(over=over(dtype, logvar), invalid="raise", divide="raise"):
        log_prob = DiagonalGaussian(mu, lv).log_prob(x)
        log_prob.sum().backward()
        entropy = DiagonalGaussian(mu, lv).entropy()
    exact = -0.5 * 2 * (np.log(2 * np.pi) + np.float64(lv.data[0, 0]) + c * c)
    np.testing.assert_allclose(log_prob.data, [exact], rtol=16 * np.finfo(dtype).eps)
    np.testing.assert_allclose(lv.grad, -0.5 * (1 - c * c) * np.ones((1, 2)), rtol=1e-5, atol=1e-6)
    assert np.isfinite(x.grad).all() and np.isfinite(mu.grad).all()
    np.testing.assert_allclose(entropy.data, [1 + np.log(2 * np.pi) + np.float64(lv.data[0, 0])],
                               rtol=16 * np.finfo(dtype).eps)
    if over(dtype, logvar) == "raise":  # σ itself representable
        z = DiagonalGaussian(mu, lv).rsample(np.random.default_rng(0))
        assert np.isfinite(z.data).all() and z.dtype == dtype


@pytest.mark.parametrize("dtype, logvar", [(np.float32, 100.0), (np.float32, -250.0), (np.float64, 800.0),
                                           (np.float64, -1600.0)])
def test_kl_to_the_standard_normal_at_extreme_log_variances(dtype, logvar):
    """½ Σ (μ² + σ² − 1 − log σ²): exact where σ² is representable or vanishes; +inf where σ² overflows,
    as it should (the exact value does too)."""
    mu, lv = (mv.Tensor(np.full((1, 2), v, dtype), requires_grad=True) for v in (0.5, logvar))
    with np.errstate(over="ignore"):
        kl = DiagonalGaussian(mu, lv).kl_divergence()
    with np.errstate(over="ignore"):
        exact = 0.5 * 2 * (0.25 + np.exp(np.float64(logvar)) - 1 - logvar)
        representable = np.isfinite(np.asarray(exact, dtype))
    if representable:
        np.testing.assert_allclose(kl.data, [exact], rtol=16 * np.finfo(dtype).eps)
    else:
        assert kl.data.tolist() == [np.inf]
