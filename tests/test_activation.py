"""--activation: the IWAE paper's tanh model from the command line; the checkpoint, evaluate, sample
and the PyTorch export (nn.Tanh) all use the run's activation."""
import json

import numpy as np
import pytest

import minivae as mv
from minivae.cli import main
from minivae.nn import Tanh
from minivae.training import CheckpointError, TrainConfig, load_checkpoint

TANH = ["--epochs", "1", "--batch-size", "100", "--hidden", "8", "6", "--latent-dim", "3", "--activation", "tanh"]


@pytest.fixture(scope="module")
def tanh_run(mnist_dir, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("tanh") / "run"
    assert main(["train", *TANH, "--data-dir", str(mnist_dir), "--out", str(out)]) == 0
    return out


def test_the_run_trains_and_saves_a_tanh_network(tanh_run):
    saved = load_checkpoint(tanh_run / "checkpoint.npz")
    assert saved.config.activation == "tanh" and saved.model.config["activation"] == "tanh"
    assert sum(isinstance(m, Tanh) for m in saved.model.modules()) == 4  # two in the encoder, two in the decoder
    assert saved.model.config["hidden"] == [8, 6] and saved.model.config["latent_dim"] == 3


def test_evaluate_and_sample_use_the_runs_activation(tanh_run, tmp_path, capsys):
    assert main(["evaluate", str(tanh_run / "checkpoint.npz"), "--iw-samples", "20", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert np.isfinite(report["iw_negative_log_likelihood"]) and report["negative_elbo"] > 0
    assert main(["sample", str(tanh_run / "checkpoint.npz"), "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    model = load_checkpoint(tanh_run / "checkpoint.npz").model
    z = np.random.default_rng(0).standard_normal((4, 3), dtype=np.float32)
    with mv.no_grad():  # the decoder, by hand with tanh, gives what the model computes
        h = z
        for layer in model.decoder.modules():
            if hasattr(layer, "weight"):
                h = h @ layer.weight.data.T + layer.bias.data
                if layer is not list(model.decoder.modules())[-1]:
                    h = np.tanh(h)
        np.testing.assert_allclose(model.decode(z).data, h, rtol=1e-5, atol=1e-6)


def test_the_export_loads_into_a_torch_module_with_tanh(tanh_run, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from minivae.training.export import torch_module
    out = tmp_path / "model.pt"
    assert main(["export", str(tanh_run / "checkpoint.npz"), "--torch", str(out)]) == 0
    assert "torch.nn.Tanh" in capsys.readouterr().out
    model = load_checkpoint(tanh_run / "checkpoint.npz").model
    module = torch_module(model.config)
    assert sum(isinstance(m, torch.nn.Tanh) for m in module.modules()) == 4
    assert not any(isinstance(m, torch.nn.ReLU) for m in module.modules())
    module.load_state_dict(torch.load(out, weights_only=True), strict=True)
    x = np.random.default_rng(1).random((5, 784), dtype=np.float32)
    with torch.no_grad(), mv.no_grad():
        mu, logvar = module.encode(torch.from_numpy(x))
        ours_mu, ours_logvar = model.encode(x)
        np.testing.assert_allclose(mu.numpy(), ours_mu.data, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(logvar.numpy(), ours_logvar.data, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(module.decode(mu).numpy(), model.decode(ours_mu.data).data, rtol=1e-4, atol=1e-4)


def test_resuming_with_another_activation_is_refused(tanh_run):
    with pytest.raises(CheckpointError, match="activation='relu'"):
        from minivae.training import train
        train(TrainConfig(epochs=2, batch_size=100, hidden=(8, 6), latent_dim=3), tanh_run, resume=True)


def test_an_unknown_activation_is_a_usage_error(capsys, tmp_path):
    assert main(["train", "--activation", "swish", "--out", str(tmp_path / "x")]) == 2
    assert "invalid choice: 'swish'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="activation must be one of"):
        TrainConfig(activation="swish")


def test_the_default_stays_relu():
    assert TrainConfig().activation == "relu"
    assert TrainConfig(**{k: v for k, v in TrainConfig().to_json().items() if k != "activation"}).activation == "relu"
