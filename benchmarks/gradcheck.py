"""Gradient checks at a real size: one 784×400 weight matrix, batch 16, f(W) = Σ tanh(x W).

Contenders, interleaved in every round, medians over the rounds:

- minivae's fast gradcheck (random directional derivatives; the default for inputs of this size),
- the same on a wrong VJP, with the bisection that names an element (the cost of a failure),
- PyTorch's ``torch.autograd.gradcheck(fast_mode=True)`` and HIPS autograd's ``check_grads``
  (first order, reverse mode), where installed.

The exhaustive check (every element, 2 evaluations each) is not run in full: the time of its first
``--exhaustive-elements`` elements is measured and scaled to all 313,600, and printed as such.

    python -m benchmarks.gradcheck [--rounds 5] [--exhaustive-elements 200]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import minivae as mv
from minivae.gradcheck import _central_differences

BATCH, IN, OUT = 16, 784, 400


def problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((BATCH, IN)), rng.standard_normal((IN, OUT)) * 0.05


@mv.primitive
def tanh_with_wrong_vjp(z):
    return np.tanh(z)


tanh_with_wrong_vjp.defvjp(lambda ctx, g: (g * (1 - ctx.ans),))  # right: g·(1 − ans²)


def contenders(x, w):
    """(label, callable) pairs; each callable runs one complete check."""
    x_tensor = mv.Tensor(x)

    def minivae_fast():
        assert mv.gradcheck(lambda t: (x_tensor @ t).tanh().sum(), w, fast=True)

    def minivae_failing():
        try:
            mv.gradcheck(lambda t: tanh_with_wrong_vjp(x_tensor @ t).sum(), w, fast=True)
        except mv.GradcheckError as err:
            assert "worst element" in str(err)
        else:
            raise AssertionError("the wrong VJP was not caught")

    found = [("minivae gradcheck(fast=True)", minivae_fast),
             ("minivae gradcheck(fast=True), wrong VJP, localised", minivae_failing)]
    try:
        import torch
    except ImportError:
        print("torch not installed: its row is left out")
    else:
        x_torch = torch.tensor(x)
        w_torch = torch.tensor(w, requires_grad=True)

        def torch_fast():
            assert torch.autograd.gradcheck(lambda t: torch.tanh(x_torch @ t).sum(), (w_torch,), fast_mode=True)
        found.append((f"torch {torch.__version__} gradcheck(fast_mode=True)", torch_fast))
    try:
        import autograd.numpy as anp
        from autograd.test_util import check_grads
    except ImportError:
        print("autograd not installed: its row is left out")
    else:
        def autograd_check():
            check_grads(lambda t: anp.sum(anp.tanh(anp.dot(x, t))), modes=["rev"], order=1)(w)
        found.append(("autograd check_grads(modes=['rev'], order=1)", autograd_check))
    return found


def exhaustive_estimate(x, w, elements: int) -> float:
    """Seconds for the exhaustive check of all of w, scaled from the time of its first ``elements`` elements."""
    x_tensor = mv.Tensor(x)
    data = w.copy()
    cotangent = np.ones(())

    def objective():
        with mv.no_grad():
            return float(np.sum(cotangent * (x_tensor @ mv.Tensor(data)).tanh().sum().data))
    indices = [np.unravel_index(j, data.shape) for j in range(elements)]
    start = time.perf_counter()
    _central_differences(objective, data, 1e-6, indices)
    return (time.perf_counter() - start) * data.size / elements


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gradcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds over all contenders (default 5)")
    parser.add_argument("--exhaustive-elements", type=int, default=200,
                        help="elements timed for the exhaustive estimate (default 200; 0 skips it)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.exhaustive_elements < 0:
        parser.error("--rounds must be at least 1 and --exhaustive-elements at least 0")

    x, w = problem()
    print(f"f(W) = sum(tanh(x @ W)), x {x.shape}, W {w.shape} ({w.size:,} elements), float64")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    runs = contenders(x, w)
    times = {label: [] for label, _ in runs}
    for r in range(args.rounds):
        for label, run in runs:
            start = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - start)
        print(f"  round {r + 1}/{args.rounds} done", flush=True)
    reference = statistics.median(times[runs[0][0]])
    print()
    print("| check | median s | min s | / minivae fast |")
    print("| --- | ---: | ---: | ---: |")
    for label, _ in runs:
        median = statistics.median(times[label])
        print(f"| {label} | {median:.3f} | {min(times[label]):.3f} | {median / reference:.2f} |")
    if args.exhaustive_elements:
        estimate = exhaustive_estimate(x, w, args.exhaustive_elements)
        print(f"| minivae exhaustive (fast=False), scaled from {args.exhaustive_elements} elements | "
              f"~{estimate:.0f} | | {estimate / reference:.0f} |")
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
