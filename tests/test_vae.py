"""minivae.vae: structure, the two SGVB estimators, training, and the importance-weighted estimate."""
import json

import numpy as np
import pytest

import minivae as mv
from minivae import nn
from minivae.distributions import DiagonalGaussian
from minivae.optim import Adam
from minivae.vae import VAE, elbo_closed_form_kl, elbo_monte_carlo


def binary_data(rng, n=256, size=16, prototypes=4, flip=0.05):
    """Noisy copies of a few random binary prototypes: structure a 2-d latent space can capture."""
    patterns = rng.random((prototypes, size)) < 0.5
    return (patterns[rng.integers(0, prototypes, n)] ^ (rng.random((n, size)) < flip)).astype(np.float32)


@pytest.fixture(scope="module")
def trained():
    """A small VAE before and after 300 Adam steps on minibatches of synthetic binary data."""
    rng = np.random.default_rng(0)
    data = binary_data(rng)
    model = VAE(16, (32,), 2, rng=1)
    arrays = [p.data for p in model.parameters()]
    before = model.negative_elbo(data, 99, samples=10).item()
    adam = Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        adam.zero_grad()
        model.negative_elbo(data[rng.integers(0, len(data), 64)], rng).backward()
        adam.step()
    after = model.negative_elbo(data, 99, samples=10).item()
    return {"model": model, "data": data, "before": before, "after": after, "adam": adam, "arrays": arrays}


def test_default_network_is_pytorch_examples_vae():
    model = VAE(rng=0)
    shapes = {name: p.shape for name, p in model.named_parameters()}
    assert shapes == {
        "encoder.0.weight": (400, 784), "encoder.0.bias": (400,),
        "encoder_mu.weight": (20, 400), "encoder_mu.bias": (20,),
        "encoder_logvar.weight": (20, 400), "encoder_logvar.bias": (20,),
        "decoder.0.weight": (400, 20), "decoder.0.bias": (400,),
        "decoder.2.weight": (784, 400), "decoder.2.bias": (784,)}
    assert [type(m) for m in model.encoder] == [nn.Linear, nn.ReLU]
    assert [type(m) for m in model.decoder] == [nn.Linear, nn.ReLU, nn.Linear]
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_config_rebuilds_the_model():
    model = VAE(12, (10, 8), 3, activation="tanh", rng=0, dtype=np.float64)
    config = json.loads(json.dumps(model.config))
    assert config == {"input_dim": 12, "hidden": [10, 8], "latent_dim": 3, "activation": "tanh", "dtype": "float64"}
    copy = VAE(**config, rng=1)
    copy.load_state_dict(model.state_dict())
    x = np.random.default_rng(2).random((5, 12))
    np.testing.assert_array_equal(copy.reconstruct(x), model.reconstruct(x))
    assert [type(m) for m in copy.decoder] == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]


def test_shapes_of_encode_decode_reconstruct_sample():
    model = VAE(10, (8,), 3, rng=0)
    x = np.random.default_rng(1).random((4, 10)).astype(np.float32)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (4, 3)
    assert model.decode(np.zeros((5, 4, 3), np.float32)).shape == (5, 4, 10)
    for probs in (model.reconstruct(x), model.sample(4, 0)):
        assert probs.shape == (4, 10) and probs.dtype == np.float32
        assert isinstance(probs, np.ndarray) and ((probs > 0) & (probs < 1)).all()
    np.testing.assert_array_equal(model.sample(4, 3), model.sample(4, np.random.default_rng(3)))


def test_linear_vae_without_hidden_layers():
    model = VAE(6, (), 2, rng=0)
    assert [name for name, _ in model.named_parameters()] == [
        "encoder_mu.weight", "encoder_mu.bias", "encoder_logvar.weight", "encoder_logvar.bias",
        "decoder.0.weight", "decoder.0.bias"]
    assert model.negative_elbo(np.full((3, 6), 0.5, np.float32), 0).shape == ()


@pytest.mark.parametrize("estimator", ["closed-form", "monte-carlo"])
def test_negative_elbo_reductions(estimator):
    model = VAE(10, (8,), 3, rng=0)
    x = np.random.default_rng(1).random((6, 10)).astype(np.float32)
    per_example = model.negative_elbo(x, 5, samples=3, estimator=estimator, reduction="none")
    mean = model.negative_elbo(x, 5, samples=3, estimator=estimator)
    assert per_example.shape == (6,) and mean.shape == () and mean.dtype == np.float32
    np.testing.assert_allclose(mean.item(), per_example.data.mean(), rtol=1e-6)
    assert (per_example.data > 0).all()  # −log of a probability of binary-ish data under a Bernoulli model


def test_elbo_is_assembled_from_the_papers_terms():
    model = VAE(10, (8,), 3, rng=0, dtype=np.float64)
    x = np.random.default_rng(1).random((4, 10))
    q = model.posterior(x)
    z = q.rsample(7, samples=5)  # the draws negative_elbo makes with the same seed
    log_px_given_z = model.reconstruction_log_likelihood(x, z)
    assert log_px_given_z.shape == (5, 4)
    closed_form = elbo_closed_form_kl(log_px_given_z, model.kl_to_prior(q)).data
    monte_carlo = elbo_monte_carlo(log_px_given_z, model.log_prior(z), q.log_prob(z)).data
    np.testing.assert_allclose(-model.negative_elbo(x, 7, samples=5, reduction="none").data, closed_form)
    np.testing.assert_allclose(-model.negative_elbo(x, 7, samples=5, estimator="monte-carlo", reduction="none").data,
                               monte_carlo)
    # Written out: E[log p(x|z)] over the samples minus the closed-form KL of appendix B.
    mu, logvar = q.mu.data, q.logvar.data
    kl = -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar), axis=-1)
    probs = 1 / (1 + np.exp(-model.decode(z).data))
    log_lik = np.sum(x * np.log(probs) + (1 - x) * np.log(1 - probs), axis=-1)
    np.testing.assert_allclose(closed_form, log_lik.mean(axis=0) - kl, rtol=1e-10)


def test_the_two_estimators_agree_in_expectation():
    """SGVB-A and SGVB-B are unbiased for the same ELBO: their means over many draws agree.

    Both use the same draws (same seed), so log p(x|z) cancels and the paired difference is
    log p(z) − log q(z|x) + KL(q ‖ p), whose mean must be 0 within its standard error.
    """
    model = VAE(8, (6,), 2, rng=0, dtype=np.float64)
    points, draws = np.random.default_rng(1).random((3, 8)), 20_000
    repeated = np.repeat(points, draws, axis=0)  # each row one single-sample estimate
    estimates = {estimator: -model.negative_elbo(repeated, 1, estimator=estimator, reduction="none")
                 .data.reshape(3, draws) for estimator in ("closed-form", "monte-carlo")}
    difference = estimates["monte-carlo"] - estimates["closed-form"]
    standard_error = difference.std(axis=1) / np.sqrt(draws)
    assert (np.abs(difference.mean(axis=1)) < 4 * standard_error).all()
    assert (estimates["closed-form"].var(axis=1) < estimates["monte-carlo"].var(axis=1)).all()  # less variance


def test_negative_elbo_gradient_through_the_reparameterization_matches_central_differences():
    model = VAE(6, (5,), 2, rng=0, dtype=np.float64)
    x = np.random.default_rng(1).random((3, 6))

    def loss(weight, bias):  # the encoder's log-variance head reaches the loss only through z and the KL
        model.encoder_logvar.weight, model.encoder_logvar.bias = weight, bias
        return model.negative_elbo(x, 4, samples=2, estimator="monte-carlo")
    assert mv.gradcheck(loss, model.encoder_logvar.weight.data.copy(), model.encoder_logvar.bias.data.copy())


def test_a_small_vae_trains(trained):
    # From about 16·log 2 ≈ 11 nats (a coin per pixel) towards the data's entropy, log 4 + 16·H(0.05) ≈ 4.6.
    assert trained["before"] > 10
    assert trained["after"] < 0.6 * trained["before"]


def test_float32_parameters_stay_float32_through_training(trained):
    params = list(trained["model"].parameters())
    assert all(p.dtype == np.float32 and p.grad.dtype == np.float32 for p in params)
    assert all(p.data is array for p, array in zip(params, trained["arrays"]))
    assert all(a.dtype == np.float32 for arrays in trained["adam"].state.values() for a in arrays)


def test_importance_weighted_estimate_with_one_sample_is_the_monte_carlo_elbo(trained):
    model, x = trained["model"], trained["data"][:8]
    iw = model.importance_weighted_log_likelihood(x, 3, k=1)
    elbo = -model.negative_elbo(x, 3, estimator="monte-carlo", reduction="none").data
    assert iw.dtype == np.float64 and iw.shape == (8,)
    np.testing.assert_allclose(iw, elbo, rtol=1e-5)


def test_importance_weighted_estimate_does_not_depend_on_the_chunk_size(trained):
    model, x = trained["model"], trained["data"][:8]
    np.testing.assert_allclose(model.importance_weighted_log_likelihood(x, 3, k=60, chunk=7),
                               model.importance_weighted_log_likelihood(x, 3, k=60, chunk=60), rtol=1e-6)


def test_importance_weighted_estimate_exceeds_the_elbo_and_rises_with_k(trained):
    """E[log p̂_k] rises with k from the ELBO (k = 1) towards log p(x); compared per example, paired."""
    model, x = trained["model"], trained["data"]
    elbo = -model.negative_elbo(x, 1, samples=200, reduction="none").data.astype(np.float64)

    def expected_estimate(k, repeats, seed):  # per example, the mean of `repeats` independent k-sample estimates
        estimates = model.importance_weighted_log_likelihood(np.tile(x, (repeats, 1)), seed, k=k, chunk=250)
        return estimates.reshape(repeats, len(x)).mean(axis=0)
    iw = {1: expected_estimate(1, 50, 11), 10: expected_estimate(10, 50, 20), 1000: expected_estimate(1000, 1, 1010)}

    def z_score(high, low):
        difference = high - low
        return difference.mean() / (difference.std() / np.sqrt(len(difference)))
    assert abs(z_score(iw[1], elbo)) < 4
    assert z_score(iw[1000], elbo) > 3
    assert z_score(iw[10], iw[1]) > 3
    assert z_score(iw[1000], iw[10]) > 3


def test_input_errors():
    model = VAE(10, (8,), 3, rng=0)
    good = np.zeros((2, 10), np.float32)
    with pytest.raises(ValueError, match=r"VAE.encode: x must have shape \(batch, 10\), got \(2, 9\)"):
        model.encode(np.zeros((2, 9), np.float32))
    with pytest.raises(ValueError, match=r"VAE.elbo: x must have shape \(batch, 10\), got \(10,\)"):
        model.negative_elbo(np.zeros(10, np.float32), 0)
    with pytest.raises(ValueError, match=r"x must hold intensities in \[0, 1\], got values in \[0.0, 255.0\]"):
        model.reconstruct(good + np.float32(255) * np.eye(2, 10, dtype=np.float32))
    with pytest.raises(TypeError, match="VAE.encode: x has dtype float64, expected float32"):
        model.encode(np.zeros((2, 10)))
    with pytest.raises(TypeError, match="x must be floating-point, got dtype uint8"):
        model.encode(np.zeros((2, 10), np.uint8))
    with pytest.raises(ValueError, match=r"VAE.decode: z must have shape \(\.\.\., 3\), got \(2, 4\)"):
        model.decode(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="estimator must be one of"):
        model.negative_elbo(good, 0, estimator="sgvb")
    with pytest.raises(ValueError, match="reduction must be one of"):
        model.negative_elbo(good, 0, reduction="sum")
    with pytest.raises(ValueError, match="samples must be a positive int"):
        model.negative_elbo(good, 0, samples=0)
    with pytest.raises(ValueError, match="k must be a positive int"):
        model.importance_weighted_log_likelihood(good, 0, k=0)
    with pytest.raises(ValueError, match="VAE.sample: n must be a positive int"):
        model.sample(0, 0)


def test_constructor_errors():
    with pytest.raises(ValueError, match="VAE: latent_dim must be a positive int"):
        VAE(10, (8,), 0)
    with pytest.raises(ValueError, match="VAE: hidden must be a list or tuple of positive ints"):
        VAE(10, (8, -1), 2)
    with pytest.raises(ValueError, match="VAE: hidden must be a list or tuple of positive ints, got 400"):
        VAE(10, 400, 2)
    with pytest.raises(ValueError, match="VAE: unknown activation 'elu'"):
        VAE(10, (8,), 2, activation="elu")
    with pytest.raises(TypeError, match="VAE: dtype must be float32 or float64, got int32"):
        VAE(10, (8,), 2, dtype=np.int32)


def test_posterior_is_a_diagonal_gaussian_over_the_latent_space():
    model = VAE(10, (8,), 3, rng=0)
    q = model.posterior(np.full((2, 10), 0.5, np.float32))
    assert isinstance(q, DiagonalGaussian) and q.mu.shape == (2, 3)
    assert model.kl_to_prior(q).shape == (2,) and (model.kl_to_prior(q).data >= 0).all()


def test_the_vaes_parameters_carry_their_dotted_names_into_a_printed_graph():
    model = VAE(input_dim=4, hidden=(3,), latent_dim=2, rng=0)
    assert all(p.name == name for name, p in model.named_parameters())
    mu, _ = model.encode(np.zeros((1, 4), np.float32))
    assert "leaf 'encoder_mu.weight' (2, 3) float32 requires_grad" in mv.format_graph(mu)


def test_the_importance_weighted_log_likelihood_is_the_same_on_every_core_as_in_one_thread(monkeypatch):
    """The chunks are drawn in order and scored on every core; the result is bit for bit that of scoring
    them one after another (and of one chunk holding every sample, to rounding)."""
    import minivae.vae as vae_module
    model = VAE(12, (8,), 3, rng=0)
    x = (np.random.default_rng(1).random((5, 12)) < 0.3).astype(np.float32)
    on_every_core = model.importance_weighted_log_likelihood(x, np.random.default_rng(2), k=70, chunk=16)
    assert vae_module._in_order_on_every_core.__name__ == "_in_order_on_every_core"
    monkeypatch.setattr(vae_module, "_in_order_on_every_core", lambda function, items: map(function, items))
    one_thread = model.importance_weighted_log_likelihood(x, np.random.default_rng(2), k=70, chunk=16)
    np.testing.assert_array_equal(on_every_core, one_thread)
    one_chunk = model.importance_weighted_log_likelihood(x, np.random.default_rng(2), k=70, chunk=70)
    np.testing.assert_allclose(on_every_core, one_chunk, rtol=1e-6)
