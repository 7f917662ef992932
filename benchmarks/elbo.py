"""How good the default model gets: ``python -m benchmarks.elbo [--epochs 10] [--seeds 0 1 2] [--data-dir DIR]``.

Trains the default VAE (784-400-20, ReLU, Adam 1e-3, batch 128, closed-form KL, raw intensities as
Bernoulli targets) once per seed, on the embedded split (the first 9,000 digits of the MNIST test
set train, the last 1,000 are held out) or, with ``--data-dir`` naming a folder of the four MNIST
files, on the standard split (60,000 train, 10,000 held out), and reports the held-out negative
ELBO per digit in nats after the last epoch, per seed and averaged, as a markdown table and as
JSON. When torch is installed (the ``bench`` extra), the same model, split and hyper-parameters are
trained in PyTorch in the same run, as the peer.

The references, after 10 epochs: on the embedded split PyTorch 2.13.0 reaches about 123.1 nats
(mean of seeds 0, 1, 2; 122.4 to 124.0); on the standard split pytorch/examples' VAE, the same
model, reports a test loss of about 105.6. minivae should land within 1 nat of them, or below.
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

REFERENCE_NATS = 123.1           # PyTorch on the embedded split, 10 epochs
STANDARD_REFERENCE_NATS = 105.6  # pytorch/examples' VAE on the standard split, 10 epochs
STANDARD_TRAIN_DIGITS = 60000
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
    parser.add_argument("--data-dir", metavar="DIR",
                        help="a folder of MNIST IDX files (train and t10k: the standard split); default: the "
                             "embedded digits")
    parser.add_argument("--no-torch", action="store_true", help="leave out the PyTorch peer even if it is installed")
    parser.add_argument("--json", type=Path, default=RESULTS / "elbo.json", help="where to write the JSON results")
    args = parser.parse_args(argv)

    data = load_mnist(args.data_dir)
    standard = len(data.train_images) == STANDARD_TRAIN_DIGITS
    reference = STANDARD_REFERENCE_NATS if standard else REFERENCE_NATS
    print(f"data: {data.source} ({len(data.train_images)} training, {len(data.test_images)} held-out digits); "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
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
        whose = "pytorch/examples' VAE, the standard split" if standard else "PyTorch, the same model and split"
        print(f"\nreference ({whose}, 10 epochs): {reference} nats; minivae's difference {mean - reference:+.2f} nats")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"epochs": args.epochs, "data": data.source, "runs": runs,
                                     "mean_test_neg_elbo": mean, "pytorch_runs": peers,
                                     "pytorch_mean_test_neg_elbo": peer_mean, "reference_nats": reference}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
