"""How good the default model gets: ``python -m benchmarks.elbo [--epochs 10] [--seeds 0 1 2]``.

Trains the default VAE (784-400-20, ReLU, Adam 1e-3, batch 128, closed-form KL, raw intensities as
Bernoulli targets) on the embedded split (the first 9,000 digits of the MNIST test set train, the
last 1,000 are held out) once per seed, and reports the held-out negative ELBO per digit in nats
after the last epoch, per seed and averaged, as a markdown table and as JSON. When torch is
installed (the ``bench`` extra), the same model, split and hyper-parameters are trained in PyTorch
in the same run, as the peer.

The reference: PyTorch 2.13.0 reaches about 123.1 nats after 10 epochs (mean of seeds 0, 1, 2;
122.4 to 124.0). minivae should land within 1 nat of that, or below.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from minivae.cli.arguments import non_negative_int, positive_int
from minivae.data import load_mnist
from minivae.training import TrainConfig, train

REFERENCE_NATS = 123.1
RESULTS = Path(__file__).resolve().parent / "results"


def held_out_neg_elbo(seed: int, epochs: int, data) -> dict:
    """Train one default run and return its final held-out negative ELBO and its training time."""
    with tempfile.TemporaryDirectory() as out, open(os.devnull, "w") as quiet:
        started = time.perf_counter()
        result = train(TrainConfig(epochs=epochs, seed=seed), out, data=data, stream=quiet)
        last = result.history[-1]
    return {"seed": seed, "test_neg_elbo": last["test_neg_elbo"], "train_neg_elbo": last["train_neg_elbo"],
            "training_seconds": sum(epoch["epoch_seconds"] for epoch in result.history),
            "wall_seconds": time.perf_counter() - started}


def torch_held_out_neg_elbo(seed: int, epochs: int, data, batch_size: int = 128) -> dict | None:
    """The same run in PyTorch: shuffled batches with the remainder kept, Adam 1e-3; None without torch."""
    from benchmarks.contenders import torch_vae
    built = torch_vae(seed=seed)
    if built is None:
        return None
    import torch
    model, negative_elbo = built
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_images, order = torch.from_numpy(data.train_images), np.random.default_rng(seed)
    started = time.perf_counter()
    for _ in range(epochs):
        permutation = torch.from_numpy(order.permutation(len(train_images)))
        for start in range(0, len(train_images), batch_size):
            optimizer.zero_grad()
            negative_elbo(train_images[permutation[start:start + batch_size]]).mean().backward()
            optimizer.step()
    training_seconds = time.perf_counter() - started
    with torch.no_grad():
        test = negative_elbo(torch.from_numpy(data.test_images)).mean().item()
    return {"seed": seed, "test_neg_elbo": test, "training_seconds": training_seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.elbo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=positive_int, default=10, help="epochs per run (default 10)")
    parser.add_argument("--seeds", type=non_negative_int, nargs="+", default=[0, 1, 2],
                        help="seeds to average (default 0 1 2)")
    parser.add_argument("--no-torch", action="store_true", help="leave out the PyTorch peer even if it is installed")
    parser.add_argument("--json", type=Path, default=RESULTS / "elbo.json", help="where to write the JSON results")
    args = parser.parse_args(argv)

    data = load_mnist()
    runs, peers = [], []
    for seed in args.seeds:
        runs.append(held_out_neg_elbo(seed, args.epochs, data))
        print(f"seed {seed}: minivae held-out negative ELBO {runs[-1]['test_neg_elbo']:.2f} nats", flush=True)
        peer = None if args.no_torch else torch_held_out_neg_elbo(seed, args.epochs, data)
        if peer is not None:
            peers.append(peer)
            print(f"seed {seed}: pytorch held-out negative ELBO {peer['test_neg_elbo']:.2f} nats", flush=True)
    mean = statistics.mean(run["test_neg_elbo"] for run in runs)
    peer_mean = statistics.mean(peer["test_neg_elbo"] for peer in peers) if peers else None

    print("\n| seed | minivae held-out −ELBO (nats) | minivae training s "
          "| pytorch held-out −ELBO (nats) | pytorch training s |"
          "\n|---|---|---|---|---|")
    for run, peer in itertools.zip_longest(runs, peers):
        peer_cells = f"{peer['test_neg_elbo']:.2f} | {peer['training_seconds']:.1f}" if peer else "– | –"
        print(f"| {run['seed']} | {run['test_neg_elbo']:.2f} | {run['training_seconds']:.1f} | {peer_cells} |")
    print(f"| mean | **{mean:.2f}** | | {f'**{peer_mean:.2f}**' if peers else '–'} | |")
    if args.epochs == 10:
        print(f"\nreference (PyTorch, same model and split, 10 epochs): {REFERENCE_NATS} nats; "
              f"minivae's difference {mean - REFERENCE_NATS:+.2f} nats")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"epochs": args.epochs, "runs": runs, "mean_test_neg_elbo": mean,
                                     "pytorch_runs": peers, "pytorch_mean_test_neg_elbo": peer_mean,
                                     "reference_nats": REFERENCE_NATS}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
