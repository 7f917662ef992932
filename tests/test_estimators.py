"""The score-function and reparameterization estimators: unbiased, and how their variances compare."""
import json
import struct

import numpy as np
import pytest

import minivae as mv
from minivae.cli import main
from minivae.distributions import DiagonalGaussian, Exponential, Logistic
from minivae.figures import png_problem
from minivae.study.estimators import (GRADIENT_ESTIMATORS, elbo_estimate, encoder_gradient, encoder_parameters,
                                      gradients, reparameterization_gradient, score_function_gradient)
from minivae.study.variance import fit_vae, gradient_moments, variance_study, variance_table
from minivae.training import RunState, TrainConfig, save_checkpoint
from minivae.vae import VAE

REPEATS = 2000


def square(z):
    """f(z) = Σ_j z_j², per sample."""
    return (z * z).sum(axis=-1)


# (distribution, its parameters, the exact gradient of E[Σ z²] with respect to each)
MU, LOG_VAR = np.array([0.8, -0.5, 0.3]), np.array([-0.3, 0.4, 0.0])
LOG_SCALE, LOG_RATE = np.array([-0.5, 0.2, 0.0]), np.array([0.3, -0.2, 0.5])
CASES = {
    # E[z²] = μ² + σ²
    "gaussian": (DiagonalGaussian, (MU, LOG_VAR), (2 * MU, np.exp(LOG_VAR))),
    # E[z²] = μ² + s²π²/3
    "logistic": (Logistic, (MU, LOG_SCALE), (2 * MU, 2 * np.exp(2 * LOG_SCALE) * np.pi ** 2 / 3)),
    # E[z²] = 2/λ²
    "exponential": (Exponential, (LOG_RATE,), (-4 * np.exp(-2 * LOG_RATE),)),
}
BASELINES = {"none": None, "leave-one-out": "leave-one-out", "constant": 1.5}


def moments_of(estimator, case, samples, **options):
    cls, arrays, exact = CASES[case]
    params = [mv.Tensor(a, requires_grad=True) for a in arrays]
    q = cls(*params)
    rng = np.random.default_rng(0)
    mean, variance = gradient_moments(lambda: estimator(square, q, params, rng, samples, **options), REPEATS)
    return mean, np.sqrt(variance / REPEATS), np.concatenate(exact)


@pytest.mark.parametrize("case", list(CASES))
def test_reparameterization_gradient_is_unbiased(case):
    mean, standard_error, exact = moments_of(reparameterization_gradient, case, samples=16)
    assert np.all(standard_error < 0.05 * np.abs(exact))  # precise enough to see a 20% bias
    assert np.all(np.abs(mean - exact) < 4.5 * standard_error)


@pytest.mark.parametrize("baseline", list(BASELINES))
@pytest.mark.parametrize("case", list(CASES))
def test_score_function_gradient_is_unbiased(case, baseline):
    mean, standard_error, exact = moments_of(score_function_gradient, case, samples=64, baseline=BASELINES[baseline])
    assert np.all(standard_error < 0.15 * np.abs(exact))
    assert np.all(np.abs(mean - exact) < 4.5 * standard_error)


def test_score_function_variance_exceeds_reparameterization_variance_and_falls_with_a_baseline():
    plain = moments_of(score_function_gradient, "gaussian", samples=4)[1]
    centred = moments_of(score_function_gradient, "gaussian", samples=4, baseline="leave-one-out")[1]
    pathwise = moments_of(reparameterization_gradient, "gaussian", samples=4)[1]
    assert np.all(centred < plain) and np.all(pathwise < centred)


def test_gradients_leave_every_grad_as_it_was():
    w = mv.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    unrelated = mv.Tensor(np.array([3.0]), requires_grad=True)
    other = mv.Tensor(np.array([0.5, 0.5]), requires_grad=True)
    w.grad = np.array([10.0, 10.0])
    g_w, g_unrelated = gradients((w * w * other).sum(), [w, unrelated])
    np.testing.assert_array_equal(g_w, [1.0, 2.0])
    np.testing.assert_array_equal(g_unrelated, [0.0])
    np.testing.assert_array_equal(w.grad, [10.0, 10.0])
    assert other.grad is None and unrelated.grad is None


def test_estimator_errors_are_named():
    mu = mv.Tensor(np.zeros(2), requires_grad=True)
    q = DiagonalGaussian(mu, np.zeros(2))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="score_function_gradient: the leave-one-out baseline needs samples >= 2"):
        score_function_gradient(square, q, [mu], rng, 1, baseline="leave-one-out")
    with pytest.raises(ValueError, match="score_function_gradient: baseline must be None"):
        score_function_gradient(square, q, [mu], rng, 3, baseline="mean")
    with pytest.raises(ValueError, match=r"reparameterization_gradient: f must return a Tensor of per-sample values"):
        reparameterization_gradient(lambda z: z.sum(), q, [mu], rng, 3)
    with pytest.raises(ValueError, match="reparameterization_gradient: samples must be a positive int"):
        reparameterization_gradient(square, q, [mu], rng, 0)
    with pytest.raises(TypeError, match="gradients: inputs must be Tensors, got ndarray"):
        gradients(square(mu[None]).sum(), [np.zeros(2)])


# ------------------------------------------------------------------------------ the VAE's encoder
def tiny_vae(seed=0, latent_dim=2):
    rng = np.random.default_rng(seed)
    vae = VAE(6, (5,), latent_dim, rng=rng, dtype=np.float64)
    x = (rng.random((3, 6)) < 0.5).astype(np.float64)
    return vae, x


@pytest.mark.parametrize("family", ["gaussian", "logistic"])
def test_every_encoder_gradient_estimator_has_the_same_expectation(family):
    vae, x = tiny_vae()
    rng = np.random.default_rng(1)
    baseline = elbo_estimate(vae, x, rng, 1000, family).data
    repeats = 400
    moments = {}
    for estimator in GRADIENT_ESTIMATORS:
        if estimator == "closed-form" and family != "gaussian":
            continue
        chosen = baseline if estimator == "score-function+baseline" else None
        mean, variance = gradient_moments(lambda: encoder_gradient(vae, x, estimator, rng, 10, family, chosen), repeats)
        moments[estimator] = mean, variance / repeats
    reference = "closed-form" if family == "gaussian" else "monte-carlo"
    ref_mean, ref_var = moments.pop(reference)
    live = ref_var > 0  # entries behind a dead ReLU get no gradient from any estimator
    for estimator, (mean, var) in moments.items():
        z = (mean - ref_mean)[live] / np.sqrt(var + ref_var)[live]
        assert np.abs(z).max() < 5, estimator
    # the comparison has power: SGVB-A's mean is pinned down to a fraction of the gradient itself
    pinned = np.sqrt(moments.get("monte-carlo", (ref_mean, ref_var))[1][live]) < 0.2 * np.abs(ref_mean[live])
    assert pinned.mean() > 0.5


def test_reparameterization_beats_the_score_function_for_the_vae_and_variance_falls_as_one_over_s():
    vae, x = tiny_vae(2)
    rows = variance_study(vae, x, np.random.default_rng(3), "init", sample_sizes=(1, 10), repeats=300)
    variance = {(r.estimator, r.samples): r.variance for r in rows}
    for samples in (1, 10):
        assert variance["score-function", samples] > 3 * variance["monte-carlo", samples]
        assert variance["monte-carlo", samples] > variance["closed-form", samples]
        assert variance["score-function+baseline", samples] < variance["score-function", samples]
    for estimator in GRADIENT_ESTIMATORS:
        assert 5 < variance[estimator, 1] / variance[estimator, 10] < 20, estimator


def test_variance_table_lists_every_estimator_and_state():
    vae, x = tiny_vae(4)
    rows = [*variance_study(vae, x, np.random.default_rng(5), "init", sample_sizes=(1, 2), repeats=3),
            *variance_study(vae, x, np.random.default_rng(6), "trained", sample_sizes=(1, 2), repeats=3,
                            family="logistic")]
    lines = variance_table(rows).splitlines()
    assert lines[0] == "| estimator | S | variance (init) | SNR (init) | variance (trained) | SNR (trained) |"
    assert len(lines) == 2 + len(GRADIENT_ESTIMATORS) * 2
    assert all(r.variance > 0 and r.signal_to_noise >= 0 for r in rows)
    sgvb_b = [line for line in lines if line.startswith("| closed-form")]
    assert sgvb_b and all(line.endswith("|  |  |") for line in sgvb_b)  # no SGVB-B without a closed-form KL


@pytest.mark.parametrize("family", ["gaussian", "logistic"])
def test_fit_vae_raises_the_elbo(family):
    vae, _ = tiny_vae(7)
    rng = np.random.default_rng(8)
    images = (rng.random((200, 6)) < np.linspace(0.1, 0.9, 6)).astype(np.float64)
    history = fit_vae(vae, images, rng, steps=300, batch_size=20, family=family, lr=0.01)
    assert np.mean(history[-30:]) > np.mean(history[:30]) + 0.5


def test_encoder_gradient_errors_are_named():
    vae, x = tiny_vae()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="encoder_gradient: estimator must be one of"):
        encoder_gradient(vae, x, "REINFORCE", rng, 1)
    with pytest.raises(ValueError, match="encoder_gradient: a baseline goes with 'score-function\\+baseline' only"):
        encoder_gradient(vae, x, "score-function+baseline", rng, 1)
    with pytest.raises(ValueError, match="encoder_gradient: 'closed-form' \\(SGVB-B\\) needs the closed-form KL"):
        encoder_gradient(vae, x, "closed-form", rng, 1, family="logistic")
    with pytest.raises(ValueError, match="approximate_posterior: family must be one of"):
        encoder_gradient(vae, x, "monte-carlo", rng, 1, family="beta")
    assert len(encoder_parameters(vae)) == 6


def test_the_vae_importance_weighted_bound_rises_with_k_towards_log_px():
    """With a one-dimensional latent, ln p(x) = ln ∫ p(x|z) p(z) dz by quadrature is exact enough."""
    vae, x = tiny_vae(9, latent_dim=1)
    for p in vae.decoder.parameters():  # a decoder that depends on z strongly: a posterior far from q
        p.data *= 3
    grid = np.linspace(-12, 12, 48_001)
    with mv.no_grad():
        z = grid[:, None, None]
        log_joint = (vae.reconstruction_log_likelihood(x, z) + vae.log_prior(z)).data
    log_px = np.logaddexp.reduce(log_joint, axis=0) + np.log(grid[1] - grid[0])
    rng = np.random.default_rng(10)
    repeats = 200
    gaps, errors = [], []
    for k in (1, 10, 100, 1000):
        bounds = np.array([vae.importance_weighted_log_likelihood(x, rng, k, chunk=k) for _ in range(repeats)])
        gaps.append(log_px - bounds.mean(axis=0))
        errors.append(bounds.std(axis=0) / np.sqrt(repeats))
    assert gaps[0].sum() > 5 * np.sqrt((errors[0] ** 2).sum())  # a gap there is to close
    for i in range(3):
        assert np.all(gaps[i] - gaps[i + 1] > -4 * np.hypot(errors[i], errors[i + 1]))
    assert np.all(np.abs(gaps[3]) < 4 * errors[3] + 1e-3) and np.all(gaps[3] < 0.1 * gaps[0])


# ------------------------------------------------------------------------------ the command
TINY = ["--hidden", "8", "--latent-dim", "2", "--samples", "1", "3", "--repeats", "2", "--batch", "4",
        "--train-steps", "2"]


def test_the_command_writes_the_table_the_plot_and_the_rows(tmp_path, capsys):
    assert main(["estimators", *TINY, "--out", str(tmp_path)]) == 0
    table = (tmp_path / "variance.md").read_text()
    rows = json.loads((tmp_path / "variance.json").read_text())
    assert len(rows) == 2 * len(GRADIENT_ESTIMATORS) * 2 and {r["state"] for r in rows} == {"init", "trained"}
    assert png_problem(tmp_path / "variance.png") is None
    assert struct.unpack(">II", (tmp_path / "variance.png").read_bytes()[16:24]) == (760, 400)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["variance.json", "variance.md", "variance.png"]
    printed = capsys.readouterr()
    assert printed.out.startswith(table.split("\n\n")[0]) and "2 Adam steps" in table
    assert "measuring: trained" in printed.err


def test_the_command_measures_a_checkpoint_against_a_fresh_vae_of_its_shape(tmp_path):
    model = VAE(784, (8,), 2, rng=0)
    checkpoint = tmp_path / "checkpoint.npz"
    save_checkpoint(checkpoint, TrainConfig(hidden=(8,), latent_dim=2), model, mv.Adam(model.parameters()),
                    np.random.default_rng(0), RunState())
    assert main(["estimators", *TINY, "--posterior", "gaussian", "--checkpoint", str(checkpoint),
                 "--out", str(tmp_path / "out")]) == 0
    assert f"checkpoint {checkpoint}" in (tmp_path / "out" / "variance.md").read_text()


def test_the_command_refuses_what_it_cannot_measure(tmp_path, capsys):
    assert main(["estimators", "--repeats", "1", "--out", str(tmp_path)]) == 2
    assert "--repeats must be at least 2" in capsys.readouterr().err
    assert main(["estimators", "--checkpoint", "any.npz", "--posterior", "logistic", "--out", str(tmp_path)]) == 2
    assert "trained with the Gaussian posterior" in capsys.readouterr().err


def test_the_command_refuses_an_out_that_is_a_file_before_measuring(tmp_path, capsys):
    (tmp_path / "results").write_text("kept")
    assert main(["estimators", "--out", str(tmp_path / "results")]) == 2
    assert f"--out {tmp_path / 'results'} is not a directory" in capsys.readouterr().err
    assert (tmp_path / "results").read_text() == "kept"
