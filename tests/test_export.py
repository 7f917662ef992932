"""minivae export --torch: the state dict loads strictly into the equivalent PyTorch module and
gives the same ELBO on the same batch and noise."""
import numpy as np
import pytest

from minivae.cli import main
from minivae.data import load_mnist
from minivae.training import TrainConfig, load_checkpoint, train

torch = pytest.importorskip("torch")


class TorchVAE(torch.nn.Module):
    """The VAE of minivae in PyTorch: the same layers under the same names."""

    def __init__(self, hidden=(400,), latent_dim=20, input_dim=784):
        super().__init__()
        widths = [input_dim, *hidden]
        self.encoder = torch.nn.Sequential(*[layer for a, b in zip(widths, widths[1:])
                                             for layer in (torch.nn.Linear(a, b), torch.nn.ReLU())])
        self.encoder_mu = torch.nn.Linear(widths[-1], latent_dim)
        self.encoder_logvar = torch.nn.Linear(widths[-1], latent_dim)
        widths = [latent_dim, *reversed(hidden), input_dim]
        layers = [layer for a, b in zip(widths, widths[1:]) for layer in (torch.nn.Linear(a, b), torch.nn.ReLU())]
        self.decoder = torch.nn.Sequential(*layers[:-1])

    def negative_elbo(self, x, eps):
        h = self.encoder(x)
        mu, logvar = self.encoder_mu(h), self.encoder_logvar(h)
        logits = self.decoder(mu + torch.exp(0.5 * logvar) * eps)
        reconstruction = -torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(-1)
        return (kl - reconstruction).mean()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from minivae.data import MnistSplit
    everything = load_mnist()
    digits = MnistSplit(everything.train_images[:300], everything.train_labels[:300], everything.test_images[:100],
                        everything.test_labels[:100], "subset")
    out = tmp_path_factory.mktemp("run")
    train(TrainConfig(epochs=1, batch_size=50, hidden=(32, 16), latent_dim=3), out, data=digits,
          stream=open("/dev/null", "w"))
    return out / "checkpoint.npz"


def test_the_exported_state_dict_loads_strictly_and_gives_the_same_elbo(checkpoint, tmp_path, capsys):
    out = tmp_path / "model.pt"
    assert main(["export", str(checkpoint), "--torch", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    state = torch.load(out, weights_only=True)
    module = TorchVAE(hidden=(32, 16), latent_dim=3)
    assert module.load_state_dict(state, strict=True) is not None
    model = load_checkpoint(checkpoint).model
    for name, array in model.state_dict().items():
        assert state[name].dtype == torch.float32 and np.array_equal(state[name].numpy(), array)

    x = load_mnist().test_images[:64]
    ours = float(model.negative_elbo(x, np.random.default_rng(5)).data)
    eps = np.random.default_rng(5).standard_normal((1, 64, 3), dtype=np.float32)[0]  # the noise rsample draws
    with torch.no_grad():
        theirs = float(module.negative_elbo(torch.from_numpy(x), torch.from_numpy(eps)))
    assert theirs == pytest.approx(ours, rel=1e-5)
    assert not list(tmp_path.glob(".*.part"))


def test_export_refuses_to_overwrite_the_checkpoint(checkpoint, capsys):
    before = checkpoint.read_bytes()
    assert main(["export", str(checkpoint), "--torch", str(checkpoint)]) == 1
    assert "is the input" in capsys.readouterr().err
    assert checkpoint.read_bytes() == before
