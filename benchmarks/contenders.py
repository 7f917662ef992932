"""The training steps that the benchmarks time, all on one model and one batch.

The model is the VAE of pytorch/examples: fc1 784→400 ReLU, heads 400→20 for μ and log σ²,
decoder 20→400 ReLU, 400→784 logits; Bernoulli likelihood (binary cross-entropy with logits
summed over pixels), closed-form KL, negative ELBO averaged over the batch, Adam (lr 1e-3).
Each ``*_step`` function builds its contender and returns a function that runs one step.
"""
from __future__ import annotations

import numpy as np

import minivae as mv


def batch_of(batch: int, input_dim: int, seed: int = 0, chunk: int = 4096) -> np.ndarray:
    """Binary images (pixels on with probability 0.13, about MNIST's ink), float32, made ``chunk`` rows
    at a time so that a large set needs no float64 temporary of its size."""
    rng, images = np.random.default_rng(seed), np.empty((batch, input_dim), np.float32)
    for first in range(0, batch, chunk):
        rows = images[first:first + chunk]
        rows[...] = rng.random(rows.shape, dtype=np.float32) < 0.13
    return images


def minivae_trainer(hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0):
    """``step(x)``: one minivae step on the batch x (an array): zero_grad, negative ELBO, backward, Adam."""
    model = mv.VAE(input_dim, (hidden,), latent, rng=seed)
    optimizer = mv.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)

    def step(x):
        optimizer.zero_grad()
        model.negative_elbo(mv.Tensor(x), rng).backward()
        optimizer.step()
    return step


def minivae_step(batch: int = 128, hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0):
    """One minivae step on a fixed batch."""
    step, x = minivae_trainer(hidden, latent, input_dim, seed), batch_of(batch, input_dim, seed)
    return lambda: step(x)


def minivae_phases(batch: int = 128, hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0):
    """The same step cut into its phases, each a function: forward, backward, optimizer."""
    model = mv.VAE(input_dim, (hidden,), latent, rng=seed)
    optimizer = mv.Adam(model.parameters(), lr=1e-3)
    x, rng = mv.Tensor(batch_of(batch, input_dim, seed)), np.random.default_rng(seed)
    graph = {}

    def forward():
        optimizer.zero_grad()
        graph["loss"] = model.negative_elbo(x, rng)

    def backward():
        graph.pop("loss").backward()
    return {"forward": forward, "backward": backward, "optimizer": optimizer.step}


def floor_step(batch: int = 128, hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0):
    """The matrix products of one minivae step alone, same shapes and transposes, into preallocated outputs.

    Forward: x Wᵀ for the five layers (W is (out, in)). Backward: gᵀ x for the five weight
    gradients and g W for the input gradients of every layer but the first (x needs none).
    """
    rng = np.random.default_rng(seed)
    f32 = np.float32
    layers = [(input_dim, hidden), (hidden, latent), (hidden, latent), (latent, hidden), (hidden, input_dim)]
    weights = [rng.standard_normal((n_out, n_in)).astype(f32) for n_in, n_out in layers]
    inputs = [batch_of(batch, input_dim, seed)] + [rng.standard_normal((batch, n_in)).astype(f32)
                                                   for n_in, _ in layers[1:]]
    grads = [rng.standard_normal((batch, n_out)).astype(f32) for _, n_out in layers]
    outputs = [np.empty((batch, n_out), f32) for _, n_out in layers]
    weight_grads = [np.empty_like(w) for w in weights]
    input_grads = [np.empty((batch, n_in), f32) for n_in, _ in layers]

    def step():
        for x, w, y in zip(inputs, weights, outputs):
            np.matmul(x, w.T, out=y)
        for i, (x, w, g) in enumerate(zip(inputs, weights, grads)):
            np.matmul(g.T, x, out=weight_grads[i])
            if i:
                np.matmul(g, w, out=input_grads[i])
    return step


def floor_flops(batch: int = 128, hidden: int = 400, latent: int = 20, input_dim: int = 784) -> int:
    """Floating-point operations of the floor's products (2·m·k·n each)."""
    layers = [(input_dim, hidden), (hidden, latent), (hidden, latent), (latent, hidden), (hidden, input_dim)]
    per_product = [2 * batch * n_in * n_out for n_in, n_out in layers]
    return 2 * sum(per_product) + sum(per_product[1:])


def torch_vae(hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0, threads: int = 2):
    """``(model, negative_elbo)`` in PyTorch eager (float32, CPU, ``threads`` intra-op threads); None without torch.

    ``negative_elbo(x)`` is the per-example negative ELBO (Bernoulli likelihood with logits, closed-form KL)
    of the batch x, a tensor of shape (batch,).
    """
    try:
        import torch
    except ImportError:
        return None
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(seed)

    class VAE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc21, self.fc22 = (torch.nn.Linear(input_dim, hidden), torch.nn.Linear(hidden, latent),
                                              torch.nn.Linear(hidden, latent))
            self.fc3, self.fc4 = torch.nn.Linear(latent, hidden), torch.nn.Linear(hidden, input_dim)

        def forward(self, x):
            h = F.relu(self.fc1(x))
            mu, logvar = self.fc21(h), self.fc22(h)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            return self.fc4(F.relu(self.fc3(z))), mu, logvar

    model = VAE()

    def negative_elbo(x):
        logits, mu, logvar = model(x)
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
        return reconstruction + kl
    return model, negative_elbo


def torch_trainer(hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0, threads: int = 2):
    """``step(x)``: the same step in PyTorch eager (float32, CPU, ``threads`` intra-op threads); None without torch."""
    built = torch_vae(hidden, latent, input_dim, seed, threads)
    if built is None:
        return None
    import torch
    model, negative_elbo = built
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(x):
        optimizer.zero_grad()
        negative_elbo(torch.from_numpy(x)).mean().backward()
        optimizer.step()
    return step


def torch_step(batch: int = 128, hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0,
               threads: int = 2):
    """One PyTorch step on a fixed batch; None without torch."""
    step, x = torch_trainer(hidden, latent, input_dim, seed, threads), batch_of(batch, input_dim, seed)
    return None if step is None else (lambda: step(x))
