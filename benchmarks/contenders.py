"""The training steps that the benchmarks time, all on one model, one batch and one initialisation scheme.

The model is the VAE of pytorch/examples: fc1 784→400 ReLU, heads 400→20 for μ and log σ²,
decoder 20→400 ReLU, 400→784 logits; Bernoulli likelihood (binary cross-entropy with logits
summed over pixels), closed-form KL, S samples of z per example (the reconstruction term averaged
over them), negative ELBO averaged over the batch, Adam (lr 1e-3, β = (0.9, 0.999), ε = 1e-8).
Weights and biases start from U(−1/√fan_in, 1/√fan_in) (``torch.nn.Linear``'s default, and
``minivae.nn.Linear``'s).

``CONTENDERS`` names every contender of ``python -m benchmarks.run``: its row label, the function
that builds its step (``build(config, threads)`` returns a function that runs one step on a fixed
batch and returns when the step is finished), the modules it needs (a peer whose modules are
missing is left out with a note), and the environment of its process. A new contender is one
entry there.
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass, field
from collections.abc import Callable

import numpy as np

import minivae as mv

DEFAULT = {"batch": 128, "hidden": 400, "latent": 20, "input_dim": 784, "samples": 1}
LR, BETAS, EPS = 1e-3, (0.9, 0.999), 1e-8
WITHOUT_VARIABLE = "MINIVAE_BENCH_WITHOUT"


def batch_of(batch: int, input_dim: int, seed: int = 0, chunk: int = 4096) -> np.ndarray:
    """Binary images (pixels on with probability 0.13, about MNIST's ink), float32, made ``chunk`` rows
    at a time so that a large set needs no float64 temporary of its size."""
    rng, images = np.random.default_rng(seed), np.empty((batch, input_dim), np.float32)
    for first in range(0, batch, chunk):
        rows = images[first:first + chunk]
        rows[...] = rng.random(rows.shape, dtype=np.float32) < 0.13
    return images


def layer_shapes(hidden: int = 400, latent: int = 20, input_dim: int = 784) -> list[tuple[str, int, int]]:
    """``(name, in_features, out_features)`` of the five linear layers, in pytorch/examples' names."""
    return [("fc1", input_dim, hidden), ("fc21", hidden, latent), ("fc22", hidden, latent),
            ("fc3", latent, hidden), ("fc4", hidden, input_dim)]


def initial_parameters(hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0) -> list:
    """``[(W, b), ...]`` of the five layers, float32, W of shape (out, in), from U(−1/√in, 1/√in)."""
    rng, parameters = np.random.default_rng(seed), []
    for _, n_in, n_out in layer_shapes(hidden, latent, input_dim):
        bound = 1.0 / math.sqrt(n_in)
        parameters.append((rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32),
                           rng.uniform(-bound, bound, n_out).astype(np.float32)))
    return parameters


# ------------------------------------------------------------------------ minivae (its public API)
def minivae_trainer(hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0, samples: int = 1):
    """``step(x)``: one minivae step on the batch x (an array): zero_grad, negative ELBO, backward, Adam."""
    model = mv.VAE(input_dim, (hidden,), latent, rng=seed)
    optimizer = mv.Adam(model.parameters(), lr=LR, betas=BETAS, eps=EPS)
    rng = np.random.default_rng(seed)

    def step(x):
        optimizer.zero_grad()
        model.negative_elbo(mv.Tensor(x), rng, samples=samples).backward()
        optimizer.step()
    return step


def minivae_step(batch: int = 128, hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0,
                 samples: int = 1, threads: int = 2):
    """One minivae step on a fixed batch (the kernels are those of MINIVAE_KERNELS)."""
    step, x = minivae_trainer(hidden, latent, input_dim, seed, samples), batch_of(batch, input_dim, seed)
    return lambda: step(x)


def minivae_captured_step(batch: int = 128, hidden: int = 400, latent: int = 20, input_dim: int = 784,
                          seed: int = 0, samples: int = 1, threads: int = 2):
    """One step of minivae's captured training step (``minivae.capture``) on a fixed batch: the same
    model, loss and Adam as ``minivae_step``, traced once and replayed on arrays."""
    from minivae.capture import capture_step
    model = mv.VAE(input_dim, (hidden,), latent, rng=seed)
    optimizer = mv.Adam(model.parameters(), lr=LR, betas=BETAS, eps=EPS)
    rng, x = np.random.default_rng(seed), batch_of(batch, input_dim, seed)
    step = capture_step(model, optimizer, lambda batch_x, r: model.negative_elbo(batch_x, r, samples=samples))
    return lambda: step(x, rng)


def minivae_phases(batch: int = 128, hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0,
                   samples: int = 1, threads: int = 2):
    """The same step cut into its phases, each a function: forward, backward, optimizer."""
    model = mv.VAE(input_dim, (hidden,), latent, rng=seed)
    optimizer = mv.Adam(model.parameters(), lr=LR, betas=BETAS, eps=EPS)
    x, rng = mv.Tensor(batch_of(batch, input_dim, seed)), np.random.default_rng(seed)
    graph = {}

    def forward():
        optimizer.zero_grad()
        graph["loss"] = model.negative_elbo(x, rng, samples=samples)

    def backward():
        graph.pop("loss").backward()
    return {"forward": forward, "backward": backward, "optimizer": optimizer.step}


# ------------------------------------------------------------------------ the floor
def floor_products(batch: int = 128, hidden: int = 400, latent: int = 20, input_dim: int = 784,
                   samples: int = 1) -> list[tuple[int, int, int, bool]]:
    """``(rows, in, out, input gradient wanted)`` of each layer's products in one step.

    The encoder sees the batch; the decoder sees S samples of z per example, S × batch rows.
    """
    rows = {"fc1": batch, "fc21": batch, "fc22": batch, "fc3": samples * batch, "fc4": samples * batch}
    return [(rows[name], n_in, n_out, name != "fc1") for name, n_in, n_out in layer_shapes(hidden, latent, input_dim)]


def floor_step(batch: int = 128, hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0,
               samples: int = 1, threads: int = 2):
    """The matrix products of one minivae step alone, same shapes and transposes, into preallocated outputs.

    Forward: x Wᵀ for the five layers (W is (out, in)). Backward: gᵀ x for the five weight
    gradients and g W for the input gradients of every layer but the first (x needs none). All
    are 2-D products; the decoder's have S × batch rows.
    """
    rng, f32 = np.random.default_rng(seed), np.float32
    products = floor_products(batch, hidden, latent, input_dim, samples)
    weights = [rng.standard_normal((n_out, n_in)).astype(f32) for _, n_in, n_out, _ in products]
    inputs = [batch_of(batch, input_dim, seed)] + [rng.standard_normal((rows, n_in)).astype(f32)
                                                   for rows, n_in, _, _ in products[1:]]
    grads = [rng.standard_normal((rows, n_out)).astype(f32) for rows, _, n_out, _ in products]
    outputs = [np.empty((rows, n_out), f32) for rows, _, n_out, _ in products]
    weight_grads = [np.empty_like(w) for w in weights]
    input_grads = [np.empty((rows, n_in), f32) for rows, n_in, _, _ in products]
    wanted = [want for *_, want in products]

    def step():
        for x, w, y in zip(inputs, weights, outputs):
            np.matmul(x, w.T, out=y)
        for i, (x, w, g) in enumerate(zip(inputs, weights, grads)):
            np.matmul(g.T, x, out=weight_grads[i])
            if wanted[i]:
                np.matmul(g, w, out=input_grads[i])
    return step


def floor_flops(batch: int = 128, hidden: int = 400, latent: int = 20, input_dim: int = 784, samples: int = 1) -> int:
    """Floating-point operations of the floor's products (2·m·k·n each)."""
    total = 0
    for rows, n_in, n_out, wanted in floor_products(batch, hidden, latent, input_dim, samples):
        total += 2 * rows * n_in * n_out * (3 if wanted else 2)
    return total


def floor_product_count(samples: int = 1) -> int:
    return sum(3 if wanted else 2 for *_, wanted in floor_products(samples=samples))


# ------------------------------------------------------------------------ PyTorch
def torch_vae(hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0, threads: int = 2,
              samples: int = 1, parameters=None):
    """``(model, negative_elbo)`` in PyTorch eager (float32, CPU, ``threads`` intra-op threads); None without torch.

    ``negative_elbo(x, eps=None)`` is the per-example negative ELBO (Bernoulli likelihood with logits,
    closed-form KL, ``samples`` draws of z per example; ``eps`` the standard normal draws, of shape
    (samples, batch, latent), drawn here if None) of the batch x, a tensor of shape (batch,). ``parameters``
    (from ``initial_parameters``) replaces PyTorch's own initialisation (the same scheme, other draws).
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

        def forward(self, x, eps=None):
            h = F.relu(self.fc1(x))
            mu, logvar = self.fc21(h), self.fc22(h)
            if eps is None:
                eps = torch.randn((samples, *mu.shape), dtype=mu.dtype) if samples > 1 else torch.randn_like(mu)
            z = mu + torch.exp(0.5 * logvar) * eps
            return self.fc4(F.relu(self.fc3(z))), mu, logvar

    model = VAE()
    if parameters is not None:
        with torch.no_grad():
            for layer, (weight, bias) in zip((model.fc1, model.fc21, model.fc22, model.fc3, model.fc4), parameters):
                layer.weight.copy_(torch.from_numpy(weight))
                layer.bias.copy_(torch.from_numpy(bias))

    def negative_elbo(x, eps=None):
        logits, mu, logvar = model(x, eps)
        target = x.expand_as(logits) if samples > 1 else x
        reconstruction = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(dim=-1)
        if samples > 1:
            reconstruction = reconstruction.mean(dim=0)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
        return reconstruction + kl
    return model, negative_elbo


def torch_trainer(hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0, threads: int = 2,
                  samples: int = 1, compile: bool = False):
    """``step(x)``: the same step in PyTorch (float32, CPU, ``threads`` intra-op threads); None without torch.

    With ``compile``, the whole step (zero_grad, loss, backward, Adam) goes through ``torch.compile``.
    """
    built = torch_vae(hidden, latent, input_dim, seed, threads, samples,
                      initial_parameters(hidden, latent, input_dim, seed))
    if built is None:
        return None
    import torch
    model, negative_elbo = built
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, betas=BETAS, eps=EPS)

    def step(x):
        optimizer.zero_grad()
        negative_elbo(x).mean().backward()
        optimizer.step()
    if compile:
        import torch._dynamo
        # Every trainer compiles its own step (its closure differs); a worker timing many
        # configurations must not fall back to eager after dynamo's default 8 entries.
        for limit in ("cache_size_limit", "recompile_limit"):
            if hasattr(torch._dynamo.config, limit):
                setattr(torch._dynamo.config, limit, 64)
    compiled = torch.compile(step, dynamic=False) if compile else step
    return lambda x: compiled(torch.from_numpy(x))


def torch_step(batch: int = 128, hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0,
               samples: int = 1, threads: int = 2):
    """One PyTorch eager step on a fixed batch; None without torch."""
    step, x = torch_trainer(hidden, latent, input_dim, seed, threads, samples), batch_of(batch, input_dim, seed)
    return None if step is None else (lambda: step(x))


def torch_compile_step(batch: int = 128, hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0,
                       samples: int = 1, threads: int = 2):
    """One step of ``torch.compile`` of the whole step on a fixed batch (compiled on the first call)."""
    step = torch_trainer(hidden, latent, input_dim, seed, threads, samples, compile=True)
    x = batch_of(batch, input_dim, seed)
    return lambda: step(x)


# ------------------------------------------------------------------------ JAX
def jax_negative_elbo(params, x, eps):
    """The mean negative ELBO in JAX: ``params`` [(W, b), ...] as ``initial_parameters`` gives them, x of
    shape (batch, input_dim), eps the standard normal draws of shape (samples, batch, latent)."""
    import jax
    import jax.numpy as jnp
    (w1, b1), (w21, b21), (w22, b22), (w3, b3), (w4, b4) = params
    h = jax.nn.relu(x @ w1.T + b1)
    mu, logvar = h @ w21.T + b21, h @ w22.T + b22
    z = mu + jnp.exp(0.5 * logvar) * eps
    logits = jax.nn.relu(z @ w3.T + b3) @ w4.T + b4
    bce = jnp.maximum(logits, 0) - logits * x + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    reconstruction = bce.sum(axis=-1).mean(axis=0)
    kl = -0.5 * jnp.sum(1 + logvar - mu ** 2 - jnp.exp(logvar), axis=1)
    return jnp.mean(reconstruction + kl)


def jax_trainer(hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0, samples: int = 1):
    """``step(x)``: the whole step (loss, gradient, Adam) as one ``jax.jit`` function; returns when it is done."""
    import jax
    import jax.numpy as jnp

    def update(state, x):
        params, m, v, t, key = state
        key, sub = jax.random.split(key)
        eps = jax.random.normal(sub, (samples, x.shape[0], latent), x.dtype)
        grads = jax.grad(jax_negative_elbo)(params, x, eps)
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: BETAS[0] * m + (1 - BETAS[0]) * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: BETAS[1] * v + (1 - BETAS[1]) * g * g, v, grads)
        step_size = LR / (1 - BETAS[0] ** t)
        root_correction = jnp.sqrt(1 - BETAS[1] ** t)
        params = jax.tree_util.tree_map(lambda p, m, v: p - step_size * m / (jnp.sqrt(v) / root_correction + EPS),
                                        params, m, v)
        return params, m, v, t, key

    update = jax.jit(update, donate_argnums=0)
    params = [tuple(jnp.asarray(a) for a in layer) for layer in initial_parameters(hidden, latent, input_dim, seed)]
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    state = [(params, zeros, jax.tree_util.tree_map(jnp.zeros_like, params), jnp.float32(0),
              jax.random.PRNGKey(seed))]

    def step(x):
        state[0] = jax.block_until_ready(update(state[0], x))
    return step


def jax_jit_step(batch: int = 128, hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0,
                 samples: int = 1, threads: int = 2):
    """One step of the jitted JAX step on a fixed batch (on the device once, as minivae's is wrapped once)."""
    import jax.numpy as jnp
    step, x = jax_trainer(hidden, latent, input_dim, seed, samples), jnp.asarray(batch_of(batch, input_dim, seed))
    return lambda: step(x)


# ------------------------------------------------------------------------ HIPS autograd
def autograd_negative_elbo(params, x, eps):
    """The mean negative ELBO in ``autograd.numpy``; arguments as ``jax_negative_elbo``'s."""
    import autograd.numpy as anp
    (w1, b1), (w21, b21), (w22, b22), (w3, b3), (w4, b4) = params
    h = anp.maximum(anp.dot(x, w1.T) + b1, 0)
    mu, logvar = anp.dot(h, w21.T) + b21, anp.dot(h, w22.T) + b22
    z = mu + anp.exp(0.5 * logvar) * eps
    logits = anp.matmul(anp.maximum(anp.matmul(z, w3.T) + b3, 0), w4.T) + b4
    bce = anp.maximum(logits, 0) - logits * x + anp.log1p(anp.exp(-anp.abs(logits)))
    reconstruction = anp.mean(anp.sum(bce, axis=-1), axis=0)
    kl = -0.5 * anp.sum(1 + logvar - mu ** 2 - anp.exp(logvar), axis=1)
    return anp.mean(reconstruction + kl)


def autograd_trainer(hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0, samples: int = 1):
    """``step(x)``: the step with HIPS autograd's ``grad`` over NumPy, and Adam in NumPy array expressions."""
    from autograd import grad

    gradient = grad(autograd_negative_elbo)
    params = [list(layer) for layer in initial_parameters(hidden, latent, input_dim, seed)]
    m = [[np.zeros_like(a) for a in layer] for layer in params]
    v = [[np.zeros_like(a) for a in layer] for layer in params]
    rng, t = np.random.default_rng(seed), [0]

    def step(x):
        eps = rng.standard_normal((samples, x.shape[0], latent), dtype=np.float32)
        grads = gradient(params, x, eps)
        t[0] += 1
        step_size = np.float32(LR / (1 - BETAS[0] ** t[0]))
        root_correction = np.float32(math.sqrt(1 - BETAS[1] ** t[0]))
        for p_layer, g_layer, m_layer, v_layer in zip(params, grads, m, v):
            for i, g in enumerate(g_layer):
                m_layer[i] = BETAS[0] * m_layer[i] + np.float32(1 - BETAS[0]) * g
                v_layer[i] = BETAS[1] * v_layer[i] + np.float32(1 - BETAS[1]) * g * g
                p_layer[i] = p_layer[i] - step_size * m_layer[i] / (np.sqrt(v_layer[i]) / root_correction + EPS)
    return step


def autograd_step(batch: int = 128, hidden: int = 400, latent: int = 20, input_dim: int = 784, seed: int = 0,
                  samples: int = 1, threads: int = 2):
    """One HIPS autograd step on a fixed batch."""
    step, x = autograd_trainer(hidden, latent, input_dim, seed, samples), batch_of(batch, input_dim, seed)
    return lambda: step(x)


# ------------------------------------------------------------------------ evaluation (k importance samples)
def minivae_evaluate(digits: int = 16, k: int = 5000, hidden: int = 400, latent: int = 20, seed: int = 0,
                     threads: int = 2, **_):
    """``VAE.importance_weighted_log_likelihood`` over the first ``digits`` held-out digits of the embedded
    MNIST set, called as ``minivae evaluate`` calls it: 500 samples at a time, 16 digits per call."""
    from minivae.data import load_mnist
    images = load_mnist().test_images[:digits]
    model = mv.VAE(images.shape[1], (hidden,), latent, rng=seed)
    rng = np.random.default_rng(seed)
    chunk, per_call = evaluation_chunks(k)
    return lambda: [model.importance_weighted_log_likelihood(images[first:first + per_call], rng, k=k, chunk=chunk)
                    for first in range(0, digits, per_call)]


def evaluation_chunks(k: int) -> tuple[int, int]:
    """(samples per chunk, digits per call) of ``minivae evaluate``: 500 samples at a time, 8,000 rows a call."""
    from minivae.training import IW_CHUNK, IW_SAMPLES_PER_CALL
    chunk = min(k, IW_CHUNK)
    return chunk, max(1, IW_SAMPLES_PER_CALL // chunk)


def evaluate_floor(digits: int = 16, k: int = 5000, hidden: int = 400, latent: int = 20, input_dim: int = 784,
                   seed: int = 0, threads: int = 2, **_):
    """The products of that evaluation alone, as 2-D products into preallocated outputs: per call, the
    encoder's three on the call's digits, and per chunk of samples the decoder's two on
    chunk × digits rows."""
    rng, f32 = np.random.default_rng(seed), np.float32
    chunk, per_call = evaluation_chunks(k)
    shapes = {name: (n_in, n_out) for name, n_in, n_out in layer_shapes(hidden, latent, input_dim)}
    w = {name: rng.standard_normal((n_out, n_in)).astype(f32) for name, (n_in, n_out) in shapes.items()}
    calls = [min(per_call, digits - first) for first in range(0, digits, per_call)]
    buffers = {}
    for n in set(calls):
        for s in {min(chunk, k - start) for start in range(0, k, chunk)}:
            buffers[n, s] = {"x": batch_of(n, input_dim, seed), "h": np.empty((n, hidden), f32),
                             "mu": np.empty((n, latent), f32), "logvar": np.empty((n, latent), f32),
                             "z": rng.standard_normal((s * n, latent)).astype(f32),
                             "hd": np.empty((s * n, hidden), f32), "logits": np.empty((s * n, input_dim), f32)}

    def evaluate():
        for n in calls:
            b = buffers[n, min(chunk, k)]
            np.matmul(b["x"], w["fc1"].T, out=b["h"])
            np.matmul(b["h"], w["fc21"].T, out=b["mu"])
            np.matmul(b["h"], w["fc22"].T, out=b["logvar"])
            for start in range(0, k, chunk):
                d = buffers[n, min(chunk, k - start)]
                np.matmul(d["z"], w["fc3"].T, out=d["hd"])
                np.matmul(d["hd"], w["fc4"].T, out=d["logits"])
    return evaluate


# ------------------------------------------------------------------------ the registry
@dataclass(frozen=True)
class Contender:
    """A row of the benchmark: ``build(**config, threads=n)`` returns a function that runs one step."""

    label: str
    build: Callable
    requires: tuple = ()
    env: dict = field(default_factory=dict)
    peer: bool = False
    step: bool = True  # a training step (the step and scaling sections), else the evaluation's


CONTENDERS = {
    "minivae": Contender("minivae (numba)", minivae_step, env={"MINIVAE_KERNELS": "numba"}),
    "minivae-captured": Contender("minivae captured (numba)", minivae_captured_step, env={"MINIVAE_KERNELS": "numba"}),
    "minivae-reference": Contender("minivae (reference compositions)", minivae_step,
                                   env={"MINIVAE_KERNELS": "reference"}),
    "floor": Contender("floor (matrix products)", floor_step),
    "torch": Contender("pytorch eager", torch_step, requires=("torch",), peer=True),
    "torch-compile": Contender("torch.compile (whole step)", torch_compile_step, requires=("torch",), peer=True),
    "jax-jit": Contender("jax.jit (whole step)", jax_jit_step, requires=("jax", "jaxlib"), peer=True),
    "autograd": Contender("hips autograd", autograd_step, requires=("autograd",), peer=True),
    # Not training steps: the evaluation section's pair.
    "minivae-evaluate": Contender("minivae evaluate (k importance samples)", minivae_evaluate,
                                  env={"MINIVAE_KERNELS": "numba"}, step=False),
    "evaluate-floor": Contender("floor (encoder and decoder products)", evaluate_floor, step=False),
}
STEP_CONTENDERS = tuple(name for name, contender in CONTENDERS.items() if contender.step)


def missing(name: str) -> str | None:
    """Why contender ``name`` cannot run here (a module it needs is not importable, or it is listed in
    MINIVAE_BENCH_WITHOUT, a comma-separated list of module or contender names), or None."""
    without = {item.strip() for item in os.environ.get(WITHOUT_VARIABLE, "").split(",") if item.strip()}
    contender = CONTENDERS[name]
    if name in without:
        return f"{contender.label}: left out ({WITHOUT_VARIABLE} names it)"
    for module in contender.requires:
        if module in without:
            return f"{contender.label}: left out ({WITHOUT_VARIABLE} names {module})"
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"{contender.label}: left out ({module} is not installed; pip install -e \".[bench]\")"
    return None


def available(names=STEP_CONTENDERS) -> tuple[list[str], list[str]]:
    """The contenders of ``names`` that can run here, and a note for each one left out."""
    present, notes = [], []
    for name in names:
        why = missing(name)
        (notes.append(why) if why else present.append(name))
    return present, notes
