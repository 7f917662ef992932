"""The linear-Gaussian model: ln p(x) = KL(q ‖ p(z|x)) + L(q, θ) exactly, and what maximizing L reaches."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minivae as mv
from minivae import testing as mvt
from minivae.study.linear_gaussian import (LinearGaussianEncoder, LinearGaussianModel, gaussian_kl,
                                     importance_weighted_bound, kl_to_posterior, maximize_elbo)

D, d = 5, 3


def model_and_data(seed, n=8):
    rng = np.random.default_rng(seed)
    model = LinearGaussianModel.random(D, d, rng)
    return model, model.sample(n, rng)


@st.composite
def encoders(draw):
    """Any q(z|x) = N(A x + c, L Lᵀ) of the family, with L's diagonal in [e⁻¹, e]."""
    return LinearGaussianEncoder(draw(mvt.float_arrays((d, D), low=-1, high=1)), draw(mvt.float_arrays((d,))),
                                 draw(mvt.float_arrays((d, d), low=-1, high=1)),
                                 draw(mvt.float_arrays((d,), low=-1, high=1)))


def log_gaussian(z, mean, covariance):
    difference = z - mean
    return -0.5 * (len(mean) * np.log(2 * np.pi) + np.linalg.slogdet(covariance)[1]
                   + difference @ np.linalg.solve(covariance, difference))


def test_log_marginal_and_posterior_satisfy_bayes_rule():
    """ln p(x) = ln p(x|z) + ln p(z) − ln p(z|x) at any z."""
    model, x = model_and_data(0)
    means, covariance = model.posterior(x)
    z = np.random.default_rng(1).standard_normal((len(x), d))
    joint = (model.log_likelihood(x, z) + model.log_prior(z)).data
    posterior = np.array([log_gaussian(z[n], means[n], covariance) for n in range(len(x))])
    np.testing.assert_allclose(model.log_marginal(x), joint - posterior, rtol=1e-12)


@given(st.integers(0, 2 ** 16), encoders())
def test_log_marginal_is_kl_to_posterior_plus_elbo_for_any_gaussian_q(seed, encoder):
    model, x = model_and_data(seed)
    log_px = model.log_marginal(x)
    elbo = model.elbo(x, encoder).data
    kl = kl_to_posterior(model, encoder, x)
    assert np.all(elbo <= log_px)
    np.testing.assert_allclose(log_px - elbo, kl, rtol=1e-9, atol=1e-9 * np.abs(log_px).max())


def test_closed_form_elbo_is_the_expected_log_weight():
    model, x = model_and_data(2)
    encoder = LinearGaussianEncoder.standard(D, d)
    z, log_q = encoder.rsample_with_log_prob(x, np.random.default_rng(3), samples=20_000)
    log_w = (model.log_likelihood(x, z) + model.log_prior(z) - log_q).data
    standard_error = log_w.std(axis=0) / np.sqrt(len(log_w))
    assert np.all(np.abs(log_w.mean(axis=0) - model.elbo(x, encoder).data) < 5 * standard_error)


@given(st.integers(0, 2 ** 16), encoders())
def test_elbo_gradients_match_central_differences(seed, encoder):
    model, x = model_and_data(seed, n=3)
    assert mv.gradcheck(lambda *params: model.elbo(x, encoder).sum(), *encoder.parameters(), *model.parameters())


def test_gaussian_kl_is_zero_between_equal_gaussians_and_positive_otherwise():
    covariance = np.array([[2.0, 0.3], [0.3, 0.5]])
    mean = np.array([[0.1, -0.2]])
    assert gaussian_kl(mean, covariance, mean, covariance) == pytest.approx([0.0], abs=1e-14)
    assert gaussian_kl(mean + 0.1, covariance, mean, covariance)[0] > 0


def test_maximizing_the_elbo_over_q_recovers_the_exact_posterior():
    model, x = model_and_data(4, n=20)
    encoder = LinearGaussianEncoder.standard(D, d)
    history = maximize_elbo(model, encoder, x, encoder.parameters(), steps=2000)
    means, covariance = model.posterior(x)
    assert kl_to_posterior(model, encoder, x).max() < 1e-9
    np.testing.assert_allclose(model.elbo(x, encoder).data, model.log_marginal(x), rtol=1e-9)
    np.testing.assert_allclose(encoder.mean(x).data, means, atol=1e-5)
    np.testing.assert_allclose(encoder.covariance(), covariance, atol=1e-8)
    assert max(history) <= model.log_marginal(x).mean() + 1e-12  # L ≤ ln p(x), up to rounding


def test_maximizing_over_theta_and_phi_climbs_to_the_maximum_likelihood():
    truth, x = model_and_data(5, n=200)
    best = LinearGaussianModel.maximum_likelihood(x, d).log_marginal(x).mean()
    model = LinearGaussianModel.random(D, d, np.random.default_rng(6))
    encoder = LinearGaussianEncoder.standard(D, d)
    history = maximize_elbo(model, encoder, x, [*model.parameters(), *encoder.parameters()], steps=2000)
    assert max(history) <= best + 1e-12
    assert history[0] < best - 10
    assert best - model.elbo(x, encoder).data.mean() < 1e-9
    assert best - model.log_marginal(x).mean() < 1e-9


def test_the_maximum_likelihood_model_beats_its_perturbations():
    _, x = model_and_data(7, n=100)
    best = LinearGaussianModel.maximum_likelihood(x, d)
    top = best.log_marginal(x).sum()
    rng = np.random.default_rng(8)
    for _ in range(20):
        nearby = LinearGaussianModel(*(p.data + 1e-3 * rng.standard_normal(p.shape) for p in best.parameters()))
        assert nearby.log_marginal(x).sum() < top


def test_importance_weighted_bound_rises_with_k_towards_log_marginal():
    model, x = model_and_data(9, n=4)
    encoder = LinearGaussianEncoder.standard(D, d)  # the prior: a poor proposal
    rng = np.random.default_rng(10)
    log_px = model.log_marginal(x)
    gaps = {}
    for k in (1, 10, 100, 1000):
        bounds = np.stack([importance_weighted_bound(model, encoder, x, rng, k) for _ in range(200)])
        gaps[k] = log_px - bounds.mean(axis=0)
        if k == 1:
            standard_error = bounds.std(axis=0) / np.sqrt(len(bounds))
            assert np.all(np.abs(bounds.mean(axis=0) - model.elbo(x, encoder).data) < 5 * standard_error)
    assert np.all(gaps[1] > gaps[10]) and np.all(gaps[10] > gaps[100]) and np.all(gaps[100] > gaps[1000])
    assert np.all(gaps[1000] < 0.1 * gaps[1])


def test_importance_weighted_bound_is_exact_at_the_exact_posterior():
    model, x = model_and_data(11)
    means, covariance = model.posterior(x)
    # A x + c = m(x) = Σ Wᵀ(x − b)/σ² and L = chol(Σ)
    projection = covariance @ model.weight.data.T / model.noise_variance
    scale = np.linalg.cholesky(covariance)
    encoder = LinearGaussianEncoder(projection, -projection @ model.bias.data, np.tril(scale, -1),
                                    np.log(np.diag(scale)))
    np.testing.assert_allclose(encoder.mean(x).data, means, atol=1e-12)
    for k in (1, 7):
        np.testing.assert_allclose(importance_weighted_bound(model, encoder, x, np.random.default_rng(k), k),
                                   model.log_marginal(x), rtol=1e-12)


def test_bad_shapes_are_named():
    model, _ = model_and_data(0)
    with pytest.raises(ValueError, match=r"LinearGaussianModel.log_marginal: x must have shape \(n, 5\)"):
        model.log_marginal(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="LinearGaussianEncoder: needs weight"):
        LinearGaussianEncoder(np.zeros((2, 5)), np.zeros(3), np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="LinearGaussianModel: needs weight"):
        LinearGaussianModel(np.zeros((5, 2)), np.zeros(4), 0.0)
    with pytest.raises(ValueError, match="importance_weighted_bound: k must be a positive int"):
        importance_weighted_bound(model, LinearGaussianEncoder.standard(D, d), np.zeros((1, D)), 0, 0)
