"""The IWAE paper's Table 1 ordering on a reduced schedule: ``python -m benchmarks.iwae --data-dir DIR``.

Burda, Grosse & Salakhutdinov (2015), *Importance Weighted Autoencoders*, table 1 (MNIST, one
stochastic layer: 784-200-200 tanh, 50 latent dimensions, binarized digits drawn afresh each
epoch) reports −log p(x), estimated with k = 5,000 importance samples, of a VAE and an IWAE trained
with k samples each. After the full schedule of 3,280 epochs: VAE k = 1 86.76, VAE k = 5 86.47,
IWAE k = 5 85.54 nats (context only: this benchmark runs a few epochs, not that schedule).

This script trains the three on the standard split (60,000 training digits) for ``--epochs``
epochs — VAE k = 1 and k = 5 on the SGVB-A bound averaged over k samples (``monte-carlo``), IWAE
k = 5 on the importance-weighted bound L_5 (``importance-weighted``) — with ``minivae train``'s
loop, then the same three in PyTorch in the same run (the same architecture, objective, batch
size, learning rate and binarization), and reports each one's −log p(x) with k = 5,000 on the
first ``--test-digits`` held-out digits (one fixed binarization, the same for every model) and its
negative ELBO, as a markdown table and JSON. What it checks on the short schedule is the paper's
ordering: IWAE k = 5 ≤ VAE k = 5 ≤ VAE k = 1 in −log p(x), in both frameworks.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from minivae.cli.arguments import non_negative_int, positive_int
from minivae.data import MnistSplit, load_mnist
from minivae.training import TrainConfig, bernoulli_sample, generator, held_out_targets, load_checkpoint, train

RESULTS = Path(__file__).resolve().parent / "results"
STANDARD_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
HIDDEN, LATENT, ACTIVATION = (200, 200), 50, "tanh"
MODELS = (("VAE", "monte-carlo", 1), ("VAE", "monte-carlo", 5), ("IWAE", "importance-weighted", 5))
PUBLISHED = {"VAE k=1": 86.76, "VAE k=5": 86.47, "IWAE k=5": 85.54}  # table 1, 3,280 epochs


def config_for(estimator: str, samples: int, args) -> TrainConfig:
    """The run's settings: the paper's architecture on binarized digits, our reduced schedule."""
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, latent_dim=LATENT, hidden=HIDDEN,
                       activation=ACTIVATION, lr=args.lr, samples=samples, estimator=estimator, binarize=True,
                       seed=args.seed)


def minivae_run(estimator: str, samples: int, data, test_digits: np.ndarray, args) -> dict:
    """Train with ``minivae.training.train``; −log p(x) (k = ``args.k``) and −ELBO on ``test_digits``."""
    config = config_for(estimator, samples, args)
    with tempfile.TemporaryDirectory() as out, open(os.devnull, "w") as quiet:
        result = train(config, out, data=data, stream=quiet)
        seconds = sum(epoch["epoch_seconds"] for epoch in result.history)  # the steps' time, as PyTorch's below
        model = load_checkpoint(Path(out) / "checkpoint.npz").model
    rng = np.random.default_rng([args.seed, 1])
    log_px = np.concatenate([model.importance_weighted_log_likelihood(test_digits[i:i + 10], rng, k=args.k,
                                                                      chunk=min(args.k, 500))
                             for i in range(0, len(test_digits), 10)])
    elbo = model.elbo(test_digits, np.random.default_rng([args.seed, 2]), 1, "monte-carlo").data
    return {"negative_log_likelihood": -float(log_px.mean()), "negative_elbo": -float(elbo.mean(dtype=np.float64)),
            "train_objective_last_epoch": result.history[-1]["train_neg_elbo"], "seconds": seconds}


def torch_run(estimator: str, samples: int, data, test_digits: np.ndarray, args) -> dict | None:
    """The same run in PyTorch (eager, float32, CPU); None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # minivae's step is single-threaded too
    widths = [data.train_images.shape[1], *HIDDEN]

    def mlp(sizes, last_activation):
        layers = []
        for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i < len(sizes) - 2 or last_activation:
                layers.append(torch.nn.Tanh())
        return torch.nn.Sequential(*layers)

    encoder, decoder = mlp(widths, True), mlp([LATENT, *reversed(widths)], False)
    heads = torch.nn.Linear(widths[-1], LATENT), torch.nn.Linear(widths[-1], LATENT)
    modules = torch.nn.ModuleList([encoder, *heads, decoder])
    log_2pi = math.log(2 * math.pi)

    def log_weights(x, k):
        h = encoder(x)
        mu, logvar = heads[0](h), heads[1](h)
        eps = torch.randn((k, *mu.shape))
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = decoder(z)
        log_px_z = -torch.nn.functional.binary_cross_entropy_with_logits(
            logits, x.expand_as(logits), reduction="none").sum(-1)
        log_pz = -0.5 * (log_2pi + z * z).sum(-1)
        log_qz = -0.5 * (log_2pi + logvar + eps * eps).sum(-1)
        return log_px_z + log_pz - log_qz  # (k, batch)

    def objective(x):
        w = log_weights(x, samples)
        return (torch.logsumexp(w, 0) - math.log(samples)) if estimator == "importance-weighted" else w.mean(0)

    optimizer = torch.optim.Adam(modules.parameters(), lr=args.lr)
    rng = generator(args.seed, "training")
    images = data.train_images
    started = time.perf_counter()
    train_objective = 0.0
    for _ in range(args.epochs):
        order, total = rng.permutation(len(images)), 0.0
        for start in range(0, len(images), args.batch_size):
            x = torch.from_numpy(bernoulli_sample(images[order[start:start + args.batch_size]], rng))
            optimizer.zero_grad()
            loss = -objective(x).mean()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(x)
        train_objective = total / len(images)
    seconds = time.perf_counter() - started
    with torch.no_grad():
        log_px = []
        for i in range(0, len(test_digits), 10):
            x = torch.from_numpy(test_digits[i:i + 10])
            chunks = [log_weights(x, min(500, args.k - s)) for s in range(0, args.k, 500)]
            log_px.append((torch.logsumexp(torch.cat(chunks).double(), 0) - math.log(args.k)).numpy())
        elbo = log_weights(torch.from_numpy(test_digits), 1)[0]
    return {"negative_log_likelihood": -float(np.concatenate(log_px).mean()),
            "negative_elbo": -float(elbo.double().mean()), "train_objective_last_epoch": train_objective,
            "seconds": seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.iwae", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(STANDARD_DATA),
                        help="a folder of the four MNIST files (default: ../shared/data/mnist from the project's root)")
    parser.add_argument("--epochs", type=positive_int, default=1, help="epochs per model (default 1)")
    parser.add_argument("--batch-size", type=positive_int, default=100, help="digits per step (default 100)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    parser.add_argument("--k", type=positive_int, default=5000, help="importance samples of −log p(x) (default 5000)")
    parser.add_argument("--test-digits", type=positive_int, default=200,
                        help="the first N held-out digits evaluated (default 200)")
    parser.add_argument("--train-digits", type=positive_int,
                        help="train on the first N training digits only (default: all of them)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the runs (default 0)")
    parser.add_argument("--no-torch", action="store_true", help="leave out the PyTorch peer")
    parser.add_argument("--json", type=Path, default=RESULTS / "iwae.json", help="where to write the JSON results")
    args = parser.parse_args(argv)

    data = load_mnist(args.data_dir)
    train_digits = args.train_digits or len(data.train_images)
    # The held-out digits are cut to the evaluated ones (so is each epoch's held-out evaluation); their
    # binarization, drawn row by row, is the first rows of the whole held-out set's.
    data = MnistSplit(data.train_images[:train_digits], data.train_labels[:train_digits],
                      data.test_images[:args.test_digits], data.test_labels[:args.test_digits], data.source)
    test_digits = held_out_targets(data, config_for("monte-carlo", 1, args))
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {len(data.train_images)} training digits, "
          f"the first {len(test_digits)} held-out ones; {args.epochs} epochs, batch {args.batch_size}, lr {args.lr}",
          flush=True)
    rows = []
    for name, estimator, samples in MODELS:
        label = f"{name} k={samples}"
        ours = minivae_run(estimator, samples, data, test_digits, args)
        print(f"{label}: minivae −log p(x) {ours['negative_log_likelihood']:.2f}, −ELBO {ours['negative_elbo']:.2f} "
              f"(training {ours['seconds']:.0f} s)", flush=True)
        theirs = None if args.no_torch else torch_run(estimator, samples, data, test_digits, args)
        if theirs is not None:
            print(f"{label}: pytorch −log p(x) {theirs['negative_log_likelihood']:.2f}, −ELBO "
                  f"{theirs['negative_elbo']:.2f} (training {theirs['seconds']:.0f} s)", flush=True)
        rows.append({"model": label, "estimator": estimator, "samples": samples, "minivae": ours, "pytorch": theirs,
                     "published_full_schedule": PUBLISHED[label]})

    print("\n| model | minivae −log p(x) | minivae −ELBO | PyTorch −log p(x) | PyTorch −ELBO | "
          "published, 3,280 epochs |\n|---|---|---|---|---|---|")
    for row in rows:
        ours, theirs = row["minivae"], row["pytorch"]
        peer = f"{theirs['negative_log_likelihood']:.2f} | {theirs['negative_elbo']:.2f}" if theirs else "– | –"
        print(f"| {row['model']} | {ours['negative_log_likelihood']:.2f} | {ours['negative_elbo']:.2f} | {peer} | "
              f"{row['published_full_schedule']} |")
    for framework in ("minivae", "pytorch"):
        values = [row[framework]["negative_log_likelihood"] for row in rows if row[framework]]
        if len(values) == len(rows):
            ordered = values[2] <= values[1] <= values[0]
            print(f"{framework}: IWAE k=5 ≤ VAE k=5 ≤ VAE k=1 in −log p(x): {'yes' if ordered else 'no'}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "k": args.k,
                                     "test_digits": len(test_digits), "seed": args.seed, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
