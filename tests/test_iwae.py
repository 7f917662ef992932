"""The importance-weighted bound L_k (Burda, Grosse & Salakhutdinov 2015) as a training objective:
its formula (one definition, shared with the evaluation), its stability in float32, its value and
reparameterized gradient against PyTorch, the captured step, and the ordering
L_1 ≤ L_k ≤ L_{k+1} ≤ ln p(x) on the linear-Gaussian model, where ln p(x) is exact."""
import itertools
import math

import numpy as np
import pytest

import minivae as mv
from minivae.capture import capture_step
from minivae.optim import Adam
from minivae.study.linear_gaussian import LinearGaussianEncoder, LinearGaussianModel, importance_weighted_bound
from minivae.vae import ESTIMATORS, VAE, importance_weighted_bound as bound_of_log_weights


def binary_digits(rng, n=6, d=12, dtype=np.float32):
    return (rng.random((n, d)) < 0.4).astype(dtype)


# ------------------------------------------------------------------------ the formula
def test_the_estimator_is_offered_beside_the_two_sgvb_estimators():
    assert ESTIMATORS == ("closed-form", "monte-carlo", "importance-weighted")


def test_one_sample_is_sgvb_a_exactly():
    vae, x = VAE(12, (7,), 3, rng=0), binary_digits(np.random.default_rng(1))
    a = vae.elbo(x, np.random.default_rng(2), samples=1, estimator="monte-carlo").data
    b = vae.elbo(x, np.random.default_rng(2), samples=1, estimator="importance-weighted").data
    assert np.array_equal(a, b)


@pytest.mark.parametrize("scale", [1.0, 1e3, 1e4, 3e4])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_the_log_sum_exp_is_stable_in_float32(scale, sign):
    """Weights far beyond float32's exponent range: the naive log-mean-exp gives ±inf, the bound the
    float64 value, in float32."""
    rng = np.random.default_rng(0)
    log_w = (sign * scale + rng.standard_normal((5, 4)) * 3).astype(np.float32)
    exact = np.log(np.mean(np.exp(log_w.astype(np.float64) - log_w.max(0)), axis=0)) + log_w.max(0)
    bound = bound_of_log_weights(mv.Tensor(log_w))
    assert bound.dtype == np.float32 and bound.shape == (4,)
    np.testing.assert_allclose(bound.data, exact, rtol=2e-7 * 4, atol=1e-5)
    if scale >= 1e3:
        with np.errstate(over="ignore", divide="ignore"):
            assert not np.isfinite(np.log(np.mean(np.exp(log_w), axis=0))).all()


def test_the_evaluation_and_the_objective_are_the_same_formula():
    """VAE.importance_weighted_log_likelihood (float64, in chunks) and the objective L_k (float32) on
    the same draws: the same numbers to float32 rounding, whatever the chunking."""
    vae, x = VAE(12, (7,), 3, rng=0), binary_digits(np.random.default_rng(1))
    objective = vae.elbo(x, np.random.default_rng(3), samples=40, estimator="importance-weighted").data
    for chunk in (40, 7, 1):
        evaluation = vae.importance_weighted_log_likelihood(x, np.random.default_rng(3), k=40, chunk=chunk)
        assert evaluation.dtype == np.float64
        np.testing.assert_allclose(evaluation, objective, rtol=1e-6)


def test_the_bound_lies_between_the_elbo_and_the_log_likelihood_per_draw():
    """For the same k draws, L_k ≥ the mean of their log-weights (Jensen), the SGVB-A estimate."""
    vae, x = VAE(12, (7,), 3, rng=0), binary_digits(np.random.default_rng(1))
    for seed in range(5):
        bound = vae.elbo(x, np.random.default_rng(seed), samples=5, estimator="importance-weighted").data
        elbo = vae.elbo(x, np.random.default_rng(seed), samples=5, estimator="monte-carlo").data
        assert np.all(bound >= elbo)


# ------------------------------------------------------------------------ against PyTorch
@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("k", [1, 5])
def test_value_and_reparameterized_gradient_match_pytorch(activation, k):
    torch = pytest.importorskip("torch")
    from minivae.training.export import torch_module
    vae = VAE(12, (9, 7), 3, activation=activation, rng=4)
    module = torch_module(vae.config)
    module.load_state_dict({name: torch.from_numpy(array.copy()) for name, array in vae.state_dict().items()},
                           strict=True)
    x = binary_digits(np.random.default_rng(5))
    loss = vae.negative_elbo(x, np.random.default_rng(6), samples=k, estimator="importance-weighted")
    loss.backward()
    eps = np.random.default_rng(6).standard_normal((k, len(x), 3), dtype=np.float32)  # the draws rsample makes

    xt = torch.from_numpy(x)
    mu, logvar = module.encode(xt)
    z = mu + torch.exp(0.5 * logvar) * torch.from_numpy(eps)
    log_px_z = -torch.nn.functional.binary_cross_entropy_with_logits(
        module.decode(z), xt.expand(k, -1, -1), reduction="none").sum(-1)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    theirs = -(torch.logsumexp(log_px_z + log_pz - log_qz, 0) - math.log(k)).mean()
    theirs.backward()
    assert float(loss.data) == pytest.approx(theirs.item(), rel=1e-5)
    grads = dict(module.named_parameters())
    for name, parameter in vae.named_parameters():
        np.testing.assert_allclose(parameter.grad, grads[name].grad.numpy(), rtol=2e-3, atol=2e-5, err_msg=name)


def test_the_gradient_of_the_bound_is_the_softmax_of_the_weights():
    torch = pytest.importorskip("torch")
    log_w = np.random.default_rng(0).standard_normal((6, 3)) * 20
    ours = mv.Tensor(log_w, requires_grad=True)
    bound_of_log_weights(ours).sum().backward()
    theirs = torch.tensor(log_w, requires_grad=True)
    (torch.logsumexp(theirs, 0) - math.log(6)).sum().backward()
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-12)


# ------------------------------------------------------------------------ the captured step
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_the_captured_step_gives_the_eager_steps_numbers(activation):
    x = binary_digits(np.random.default_rng(1), n=16)
    models = [VAE(12, (9, 7), 3, activation=activation, rng=2) for _ in range(2)]
    optimizers = [Adam(m.parameters(), lr=1e-2) for m in models]
    step = capture_step(models[0], optimizers[0],
                        lambda x, rng: models[0].negative_elbo(x, rng, 5, "importance-weighted"))
    rngs = [np.random.default_rng(7), np.random.default_rng(7)]
    for _ in range(4):
        captured = step(x, rngs[0])
        optimizers[1].zero_grad()
        eager = models[1].negative_elbo(mv.Tensor(x), rngs[1], 5, "importance-weighted")
        eager.backward()
        optimizers[1].step()
        assert captured == float(eager.data)
    for (name, a), (_, b) in zip(models[0].named_parameters(), models[1].named_parameters()):
        assert np.array_equal(a.data, b.data), name


# ------------------------------------------------------------------------ L_1 ≤ L_k ≤ L_{k+1} ≤ ln p(x), exactly
@pytest.fixture(scope="module")
def linear_gaussian():
    rng = np.random.default_rng(0)
    model = LinearGaussianModel.random(data_dim=5, latent_dim=2, rng=rng)
    return model, model.sample(4, rng)


def replicates(model, q, x, k, n, seed):
    """n independent draws of L_k for each row of x, shape (n, rows): one call on n copies of x."""
    bounds = importance_weighted_bound(model, q, np.tile(x, (n, 1)), np.random.default_rng(seed), k)
    return bounds.reshape(n, len(x))


def test_the_expected_one_sample_bound_is_the_exact_elbo(linear_gaussian):
    model, x = linear_gaussian
    q = LinearGaussianEncoder.standard(5, 2)
    bounds = replicates(model, q, x, 1, 4000, seed=1)
    error = bounds.std(0) / np.sqrt(len(bounds))
    assert np.all(np.abs(bounds.mean(0) - model.elbo(x, q).data) < 4 * error)


def test_each_added_sample_raises_the_expected_bound_and_it_stays_below_log_p(linear_gaussian):
    model, x = linear_gaussian
    q = LinearGaussianEncoder.standard(5, 2)  # q(z|x) = p(z): a poor proposal, so each step is large
    log_px = model.log_marginal(x)
    means = {}
    for k in range(1, 6):
        bounds = replicates(model, q, x, k, 3000, seed=k)
        means[k] = bounds.mean(0), bounds.var(0) / len(bounds)
        assert np.all(means[k][0] + 4 * np.sqrt(means[k][1]) < log_px)
    for k in range(1, 5):
        (low, low_var), (high, high_var) = means[k], means[k + 1]
        assert np.all(high - low > 3 * np.sqrt(low_var + high_var)), k


def test_the_bound_of_k_plus_one_draws_is_at_least_the_mean_bound_of_their_k_subsets(linear_gaussian):
    """Burda et al.'s proof, per draw: L_{k+1}(w_1..w_{k+1}) ≥ mean over the k-subsets I of L_k(w_I),
    by Jensen's inequality (the log of a mean ≥ the mean of logs); the right side's expectation is E[L_k]."""
    model, x = linear_gaussian
    q = LinearGaussianEncoder.standard(5, 2)
    rng = np.random.default_rng(3)
    for k in range(1, 6):
        z, log_q = q.rsample_with_log_prob(x, rng, k + 1)
        log_w = (model.log_likelihood(x, z) + model.log_prior(z) - log_q).data
        whole = bound_of_log_weights(mv.Tensor(log_w)).data
        subsets = np.mean([bound_of_log_weights(mv.Tensor(log_w[list(subset)])).data
                           for subset in itertools.combinations(range(k + 1), k)], axis=0)
        assert np.all(whole >= subsets - 1e-12)


def test_at_the_exact_posterior_every_bound_is_log_p(linear_gaussian):
    """q(z|x) = p(z|x) = N(Σ Wᵀ (x − b)/σ², Σ): every weight p(x, z)/q(z|x) is p(x), for every draw."""
    model, x = linear_gaussian
    W, b, noise = model.weight.data, model.bias.data, model.noise_variance
    _, covariance = model.posterior(x)
    scale = np.linalg.cholesky(covariance)
    weight = covariance @ W.T / noise
    q = LinearGaussianEncoder(weight, -weight @ b, np.tril(scale, -1), np.log(np.diag(scale)))
    for k in (1, 2, 7):
        np.testing.assert_allclose(importance_weighted_bound(model, q, x, np.random.default_rng(k), k),
                                   model.log_marginal(x), rtol=1e-12)
