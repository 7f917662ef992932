"""KL warm-up (Bowman et al. 2016; Sønderby et al. 2016): the weight's schedule, the weighted
objective of each estimator in exact forms, runs that record the weight, keep the held-out loss at
weight 1 and resume exactly, and the captured step's scalar argument giving the eager numbers."""
import json

import numpy as np
import pytest
from test_train import TINY, assert_same_run, digits, interrupt_after, run  # noqa: F401  (digits: a fixture)

import minivae as mv
from minivae.cli import main
from minivae.training import TrainConfig, held_out_targets, load_checkpoint
from minivae.training.config import kl_weight
from minivae.training.evaluation import held_out_negative_elbo
from minivae.vae import VAE

WARMUP = TrainConfig(**{**TINY.to_json(), "kl_warmup": 1})  # 300 digits, 10 steps an epoch, 2 epochs


def test_the_weight_rises_linearly_from_zero_to_one_over_the_warmup_epochs():
    config = TrainConfig(kl_warmup=2)
    assert [kl_weight(config, step, 10) for step in (0, 1, 5, 10, 19, 20, 21, 1000)] == [
        0.0, 0.05, 0.25, 0.5, 0.95, 1.0, 1.0, 1.0]
    assert kl_weight(TrainConfig(), 0, 10) == 1.0  # no warm-up: the bound itself from the first step


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_a_warmup_that_is_not_a_count_of_epochs_is_refused(bad):
    with pytest.raises(ValueError, match="kl_warmup must be an int >= 0"):
        TrainConfig(kl_warmup=bad)


@pytest.mark.parametrize("estimator", ["closed-form", "monte-carlo", "importance-weighted"])
def test_the_weighted_objective_in_exact_forms(estimator):
    """β weights KL(q ‖ p(z)) (closed form) or its one-sample term log q − log p(z) (the sampled
    estimators); β = 1 is the bound, bit for bit, and β = 0 leaves the reconstruction term."""
    vae = VAE(12, (7,), 3, rng=0, dtype=np.float64)
    x = (np.random.default_rng(1).random((5, 12)) < 0.4).astype(np.float64)
    with mv.no_grad():
        posterior = vae.posterior(x)
        z = posterior.sample(np.random.default_rng(2), samples=3)
        reconstruction = vae.reconstruction_log_likelihood(mv.Tensor(x), z).data
        kl_term = (posterior.log_prob(z) - vae.log_prior(z)).data
        kl = vae.kl_to_prior(posterior).data
        for beta in (0.0, 0.3, 1.0):
            got = vae.elbo(x, np.random.default_rng(2), 3, estimator, kl_weight=beta).data
            if estimator == "closed-form":
                expected = reconstruction.mean(0) - beta * kl
            else:
                log_w = reconstruction - beta * kl_term
                expected = (log_w.mean(0) if estimator == "monte-carlo" else
                            np.log(np.mean(np.exp(log_w - log_w.max(0)), axis=0)) + log_w.max(0))
            np.testing.assert_allclose(got, expected, rtol=1e-12)
        assert np.array_equal(vae.elbo(x, np.random.default_rng(2), 3, estimator, kl_weight=1.0).data,
                              vae.elbo(x, np.random.default_rng(2), 3, estimator).data)


def test_a_warmup_run_records_the_weight_and_the_true_held_out_loss(tmp_path, digits):
    result = run(WARMUP, tmp_path, digits, eager=True)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["kl_weight"] for m in lines] == [0.9, 1.0]  # the last step of each epoch: steps 9 and 19 of 10 / epoch
    model = load_checkpoint(tmp_path / "checkpoint.npz").model
    without = TrainConfig(**{**WARMUP.to_json(), "kl_warmup": 0})
    assert lines[-1]["test_neg_elbo"] == held_out_negative_elbo(model, held_out_targets(digits, without), without)
    assert result.history[0]["train_neg_elbo"] != run(TINY, tmp_path / "plain", digits).history[0]["train_neg_elbo"]
    assert "kl_weight" not in (tmp_path / "plain" / "metrics.jsonl").read_text()


@pytest.mark.parametrize("eager", [True, False])
def test_a_warmup_run_stopped_mid_epoch_resumes_exactly(tmp_path, digits, eager):
    run(WARMUP, tmp_path / "straight", digits, eager=eager)
    result = run(WARMUP, tmp_path / "resumed", digits, eager=eager, after_step=interrupt_after(7))
    assert (result.status, result.step) == ("interrupted", 7)
    run(WARMUP, tmp_path / "resumed", digits, eager=eager, resume=True)
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


def test_the_captured_step_takes_the_weight_as_an_argument_and_gives_the_eager_numbers(tmp_path, digits):
    run(WARMUP, tmp_path / "eager", digits, eager=True)
    run(WARMUP, tmp_path / "captured", digits)
    assert_same_run(tmp_path / "eager", tmp_path / "captured")


def test_the_command_line_trains_with_warmup(tmp_path, capsys, mnist_dir):
    out = tmp_path / "run"
    assert main(["train", "--data-dir", str(mnist_dir), "--epochs", "1", "--batch-size", "100", "--hidden", "8",
                 "--latent-dim", "2", "--kl-warmup", "2", "--eager", "--out", str(out)]) == 0
    line = json.loads((out / "metrics.jsonl").read_text())
    assert line["kl_weight"] == 2 / 6  # 3 steps an epoch: the last one is step 2 of the 6 of warm-up
    assert load_checkpoint(out / "checkpoint.npz").config.kl_warmup == 2
    capsys.readouterr()
    assert main(["train", "--help"]) == 0
    described = " ".join(capsys.readouterr().out.split())
    assert "--kl-warmup EPOCHS KL warm-up: multiply the KL term by a weight rising linearly" in described
