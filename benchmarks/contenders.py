"""The training steps that the benchmarks time, all on one model, one batch and one initialisation scheme.

The model is the VAE of pytorch/examples: fc1 784→400 ReLU, heads 400→20 for μ and log σ²,
decoder 20→400 ReLU, 400→784 logits; Bernoulli likelihood (binary cross-entropy with logits
summed over pixels), closed-form KL, S samples of z per example (the reconstruction term averaged
over them), negative ELBO averaged over the batch, Adam (lr 1e-3, β = (0.9, 0.999), ε = 1e-8).
Weights and biases start from U(−1/√fan_in, 1/√fan_in) (``torch.nn.Linear``'s default, and
``minivae.nn.Linear``'s).

``CONTENDERS`` names every contender: its row label, ``build(config)`` (returns a function that runs
one step on a fixed batch and returns when the step is finished), the modules it needs (a peer whose
modules are missing is left out with a note) and the environment of its process. A new contender is
one entry there.
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass, field
from collections.abc import Callable

import numpy as np

import minivae as mv
from benchmarks.config import Config

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


def layer_shapes(c: Config) -> list[tuple[str, int, int]]:
    """``(name, in_features, out_features)`` of the five linear layers, in pytorch/examples' names."""
    return [("fc1", c.input_dim, c.hidden), ("fc21", c.hidden, c.latent), ("fc22", c.hidden, c.latent),
            ("fc3", c.latent, c.hidden), ("fc4", c.hidden, c.input_dim)]


def initial_parameters(c: Config) -> list:
    """``[(W, b), ...]`` of the five layers, float32, W of shape (out, in), from U(−1/√in, 1/√in)."""
    rng, parameters = np.random.default_rng(c.seed), []
    for _, n_in, n_out in layer_shapes(c):
        bound = 1.0 / math.sqrt(n_in)
        parameters.append((rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32),
                           rng.uniform(-bound, bound, n_out).astype(np.float32)))
    return parameters


def fixed_batch(trainer: Callable, to_input: Callable = lambda x: x) -> Callable:
    """``build(config)`` of a contender: ``trainer(config)``'s step on one fixed batch (``to_input`` of it)."""
    def build(c: Config):
        step, x = trainer(c), to_input(batch_of(c.batch, c.input_dim, c.seed))
        return lambda: step(x)
    return build


# ------------------------------------------------------------------------ minivae (its public API)
def minivae_trainer(c: Config):
    """``step(x)``: one minivae step on the batch x (an array): zero_grad, negative ELBO, backward, Adam;
    the kernels are those of MINIVAE_KERNELS."""
    model = mv.VAE(c.input_dim, (c.hidden,), c.latent, rng=c.seed)
    optimizer = mv.Adam(model.parameters(), lr=LR, betas=BETAS, eps=EPS)
    rng = np.random.default_rng(c.seed)

    def step(x):
        optimizer.zero_grad()
        model.negative_elbo(mv.Tensor(x), rng, samples=c.samples).backward()
        optimizer.step()
    return step


def minivae_captured_trainer(c: Config):
    """``step(x)``: the same model, loss and Adam through ``minivae.capture``: traced once, replayed on arrays."""
    from minivae.capture import capture_step
    model = mv.VAE(c.input_dim, (c.hidden,), c.latent, rng=c.seed)
    optimizer = mv.Adam(model.parameters(), lr=LR, betas=BETAS, eps=EPS)
    rng = np.random.default_rng(c.seed)
    step = capture_step(model, optimizer, lambda x, r: model.negative_elbo(x, r, samples=c.samples))
    return lambda x: step(x, rng)


# ------------------------------------------------------------------------ the floor
def floor_products(c: Config) -> list[tuple[int, int, int, bool]]:
    """``(rows, in, out, input gradient wanted)`` of each layer's products in one step.

    The encoder sees the batch; the decoder sees S samples of z per example, S × batch rows.
    """
    rows = {"fc1": c.batch, "fc21": c.batch, "fc22": c.batch, "fc3": c.samples * c.batch, "fc4": c.samples * c.batch}
    return [(rows[name], n_in, n_out, name != "fc1") for name, n_in, n_out in layer_shapes(c)]


def floor_step(c: Config):
    """The matrix products of one minivae step alone, same shapes and transposes, into preallocated outputs.

    Forward: x Wᵀ for the five layers (W is (out, in)). Backward: gᵀ x for the five weight
    gradients and g W for the input gradients of every layer but the first (x needs none). All
    are 2-D products; the decoder's have S × batch rows.
    """
    rng, f32 = np.random.default_rng(c.seed), np.float32
    products = floor_products(c)
    weights = [rng.standard_normal((n_out, n_in)).astype(f32) for _, n_in, n_out, _ in products]
    inputs = [batch_of(c.batch, c.input_dim, c.seed)] + [rng.standard_normal((rows, n_in)).astype(f32)
                                                         for rows, n_in, _, _ in products[1:]]
    grads = [rng.standard_normal((rows, n_out)).astype(f32) for rows, _, n_out, _ in products]
    outputs = [np.empty((rows, n_out), f32) for rows, _, n_out, _ in products]
    weight_grads = [np.empty_like(w) for w in weights]
    input_grads = [np.empty((rows, n_in), f32) if wanted else None for rows, n_in, _, wanted in products]

    def step():
        for x, w, y in zip(inputs, weights, outputs):
            np.matmul(x, w.T, out=y)
        for x, w, g, weight_grad, input_grad in zip(inputs, weights, grads, weight_grads, input_grads):
            np.matmul(g.T, x, out=weight_grad)
            if input_grad is not None:
                np.matmul(g, w, out=input_grad)
    return step


def floor_flops(c: Config) -> int:
    """Floating-point operations of the floor's products (2·m·k·n each)."""
    return sum(2 * rows * n_in * n_out * (3 if wanted else 2) for rows, n_in, n_out, wanted in floor_products(c))


def floor_product_count(c: Config) -> int:
    return sum(3 if wanted else 2 for *_, wanted in floor_products(c))


# ------------------------------------------------------------------------ PyTorch
def torch_vae(c: Config, parameters=None):
    """``(model, negative_elbo)`` in PyTorch eager (float32, CPU, ``c.threads`` intra-op threads).

    ``negative_elbo(x, eps=None)`` is the per-example negative ELBO (Bernoulli likelihood with logits,
    closed-form KL, ``c.samples`` draws of z per example; ``eps`` the standard normal draws, of shape
    (samples, batch, latent), drawn here if None) of the batch x, a tensor of shape (batch,). ``parameters``
    (from ``initial_parameters``) replaces PyTorch's own initialisation (the same scheme, other draws).
    """
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(c.threads)
    torch.manual_seed(c.seed)
    layers = torch.nn.ModuleList(torch.nn.Linear(n_in, n_out) for _, n_in, n_out in layer_shapes(c))
    if parameters is not None:
        with torch.no_grad():
            for layer, (weight, bias) in zip(layers, parameters):
                layer.weight.copy_(torch.from_numpy(weight))
                layer.bias.copy_(torch.from_numpy(bias))
    fc1, fc21, fc22, fc3, fc4 = layers

    def negative_elbo(x, eps=None):
        h = F.relu(fc1(x))
        mu, logvar = fc21(h), fc22(h)
        if eps is None:
            eps = torch.randn((c.samples, *mu.shape), dtype=mu.dtype) if c.samples > 1 else torch.randn_like(mu)
        logits = fc4(F.relu(fc3(mu + torch.exp(0.5 * logvar) * eps)))
        reconstruction = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
        if c.samples > 1:
            reconstruction = reconstruction.mean(dim=0)
        return reconstruction - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
    return layers, negative_elbo


def torch_trainer(c: Config, compile: bool = False):
    """``step(x)``: the same step in PyTorch; with ``compile``, the whole step (zero_grad, loss, backward,
    Adam) goes through ``torch.compile``, which compiles on the first call."""
    import torch
    model, negative_elbo = torch_vae(c, initial_parameters(c))
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
        step = torch.compile(step, dynamic=False)
    return lambda x: step(torch.from_numpy(x))


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


def jax_trainer(c: Config):
    """``step(x)``: the whole step (loss, gradient, Adam) as one ``jax.jit`` function; returns when it is done."""
    import jax
    import jax.numpy as jnp
    tree_map = jax.tree_util.tree_map

    def update(state, x):
        params, m, v, t, key = state
        key, sub = jax.random.split(key)
        eps = jax.random.normal(sub, (c.samples, x.shape[0], c.latent), x.dtype)
        grads = jax.grad(jax_negative_elbo)(params, x, eps)
        t = t + 1
        m = tree_map(lambda m, g: BETAS[0] * m + (1 - BETAS[0]) * g, m, grads)
        v = tree_map(lambda v, g: BETAS[1] * v + (1 - BETAS[1]) * g * g, v, grads)
        step_size, root_correction = LR / (1 - BETAS[0] ** t), jnp.sqrt(1 - BETAS[1] ** t)
        params = tree_map(lambda p, m, v: p - step_size * m / (jnp.sqrt(v) / root_correction + EPS), params, m, v)
        return params, m, v, t, key

    update = jax.jit(update, donate_argnums=0)
    params = [tuple(jnp.asarray(a) for a in layer) for layer in initial_parameters(c)]
    state = [(params, tree_map(jnp.zeros_like, params), tree_map(jnp.zeros_like, params), jnp.float32(0),
              jax.random.PRNGKey(c.seed))]

    def step(x):
        state[0] = jax.block_until_ready(update(state[0], x))
    return step


def on_device(x):
    """The batch as a JAX array, put on the device once (as minivae's is wrapped once)."""
    import jax.numpy as jnp
    return jnp.asarray(x)


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


def autograd_trainer(c: Config):
    """``step(x)``: the step with HIPS autograd's ``grad`` over NumPy, and Adam in NumPy array expressions."""
    from autograd import grad

    gradient = grad(autograd_negative_elbo)
    params = [list(layer) for layer in initial_parameters(c)]
    m = [[np.zeros_like(a) for a in layer] for layer in params]
    v = [[np.zeros_like(a) for a in layer] for layer in params]
    rng, t = np.random.default_rng(c.seed), [0]

    def step(x):
        grads = gradient(params, x, rng.standard_normal((c.samples, x.shape[0], c.latent), dtype=np.float32))
        t[0] += 1
        step_size = np.float32(LR / (1 - BETAS[0] ** t[0]))
        root_correction = np.float32(math.sqrt(1 - BETAS[1] ** t[0]))
        for p_layer, g_layer, m_layer, v_layer in zip(params, grads, m, v):
            for i, g in enumerate(g_layer):
                m_layer[i] = BETAS[0] * m_layer[i] + np.float32(1 - BETAS[0]) * g
                v_layer[i] = BETAS[1] * v_layer[i] + np.float32(1 - BETAS[1]) * g * g
                p_layer[i] = p_layer[i] - step_size * m_layer[i] / (np.sqrt(v_layer[i]) / root_correction + EPS)
    return step


# ------------------------------------------------------------------------ evaluation (k importance samples)
def evaluation_chunks(k: int) -> tuple[int, int]:
    """(samples per chunk, digits per call) of ``minivae evaluate``: 500 samples at a time, 8,000 rows a call."""
    from minivae.training import IW_CHUNK, IW_SAMPLES_PER_CALL
    chunk = min(k, IW_CHUNK)
    return chunk, max(1, IW_SAMPLES_PER_CALL // chunk)


def minivae_evaluate(c: Config):
    """``VAE.importance_weighted_log_likelihood`` with k = ``c.samples`` over the first ``c.batch`` held-out
    digits of the embedded MNIST set, called as ``minivae evaluate`` calls it (chunks of samples, a few
    digits per call)."""
    from minivae.data import load_mnist
    images = load_mnist().test_images[:c.batch]
    model = mv.VAE(images.shape[1], (c.hidden,), c.latent, rng=c.seed)
    rng = np.random.default_rng(c.seed)
    chunk, per_call = evaluation_chunks(c.samples)
    return lambda: [model.importance_weighted_log_likelihood(images[first:first + per_call], rng, k=c.samples,
                                                             chunk=chunk) for first in range(0, c.batch, per_call)]


def evaluate_floor(c: Config):
    """The products of that evaluation alone, into preallocated outputs: per call, the encoder's three on
    the call's digits, and per chunk of samples the decoder's two on chunk × digits rows."""
    rng, f32 = np.random.default_rng(c.seed), np.float32
    chunk, per_call = evaluation_chunks(c.samples)
    w = {name: rng.standard_normal((n_out, n_in)).astype(f32) for name, n_in, n_out in layer_shapes(c)}
    calls = [min(per_call, c.batch - first) for first in range(0, c.batch, per_call)]
    chunks = [min(chunk, c.samples - start) for start in range(0, c.samples, chunk)]
    buffers = {(n, s): {"x": batch_of(n, c.input_dim, c.seed), "h": np.empty((n, c.hidden), f32),
                        "mu": np.empty((n, c.latent), f32), "logvar": np.empty((n, c.latent), f32),
                        "z": rng.standard_normal((s * n, c.latent)).astype(f32),
                        "hd": np.empty((s * n, c.hidden), f32), "logits": np.empty((s * n, c.input_dim), f32)}
               for n in set(calls) for s in set(chunks)}

    def evaluate():
        for n in calls:
            b = buffers[n, chunks[0]]
            np.matmul(b["x"], w["fc1"].T, out=b["h"])
            np.matmul(b["h"], w["fc21"].T, out=b["mu"])
            np.matmul(b["h"], w["fc22"].T, out=b["logvar"])
            for s in chunks:
                np.matmul(buffers[n, s]["z"], w["fc3"].T, out=buffers[n, s]["hd"])
                np.matmul(buffers[n, s]["hd"], w["fc4"].T, out=buffers[n, s]["logits"])
    return evaluate


# ------------------------------------------------------------------------ the registry
@dataclass(frozen=True)
class Contender:
    """A row of the benchmark: ``build(config)`` returns a function that runs one step (or evaluation)."""

    label: str
    build: Callable[[Config], Callable[[], object]]
    requires: tuple = ()
    env: dict = field(default_factory=dict)
    step: bool = True  # a training step (the step and scaling sections), else the evaluation's


NUMBA, REFERENCE = {"MINIVAE_KERNELS": "numba"}, {"MINIVAE_KERNELS": "reference"}
CONTENDERS = {
    "minivae": Contender("minivae (numba)", fixed_batch(minivae_trainer), env=NUMBA),
    "minivae-captured": Contender("minivae captured (numba)", fixed_batch(minivae_captured_trainer), env=NUMBA),
    "minivae-reference": Contender("minivae (reference compositions)", fixed_batch(minivae_trainer), env=REFERENCE),
    "floor": Contender("floor (matrix products)", floor_step),
    "torch": Contender("pytorch eager", fixed_batch(torch_trainer), requires=("torch",)),
    "torch-compile": Contender("torch.compile (whole step)", fixed_batch(lambda c: torch_trainer(c, compile=True)),
                               requires=("torch",)),
    "jax-jit": Contender("jax.jit (whole step)", fixed_batch(jax_trainer, on_device), requires=("jax", "jaxlib")),
    "autograd": Contender("hips autograd", fixed_batch(autograd_trainer), requires=("autograd",)),
    # Not training steps: the evaluation section's pair.
    "minivae-evaluate": Contender("minivae evaluate (k importance samples)", minivae_evaluate, env=NUMBA, step=False),
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
