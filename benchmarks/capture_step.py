"""The captured step against the eager step and the floor (the step's 14 matrix products alone), in one process.

    python -m benchmarks.capture_step [--turns 400] [--configs 128x1,32x1,128x10] [--threads 2]

For each configuration (batch × samples per digit) it builds three contenders on the default model
(784-400-20, float32, Adam lr 1e-3): the eager step (zero_grad, negative ELBO, backward, Adam), the
captured step (``minivae.capture``) and the floor; times them in interleaved turns (one of each per
turn, the order rotating), and prints the medians and the medians of the per-turn ratios, with the
load average before and after. The machine is shared: read ratios, not absolute times.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--turns", type=int, default=400, help="timed turns per configuration (default 400)")
parser.add_argument("--warmup", type=int, default=30, help="untimed turns first (default 30)")
parser.add_argument("--configs", default="128x1,32x1,128x10", help="batch x samples, comma-separated")
parser.add_argument("--threads", default="2", help="OPENBLAS_NUM_THREADS (default 2)")
parser.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="wall: perf_counter; cpu: this thread's CPU time (only with --threads 1), which leaves out "
                         "the time other processes hold the cores")
parser.add_argument("--startup", type=int, default=0, metavar="N",
                    help="instead: N fresh processes per contender (alternating) measuring the time from start to the "
                         "first finished step and the peak resident memory after 50 steps")
parser.add_argument("--backend", default="numba", choices=["numba", "reference"], help="kernel backend")


def floor_step(batch: int, samples: int, hidden=400, latent=20, input_dim=784, seed=0):
    """The 14 products of a step with ``samples`` draws per digit (the decoder sees samples·batch rows),
    into preallocated outputs: x Wᵀ for the five layers, gᵀ x for the five weight gradients, g W for
    the input gradients of every layer but the first."""
    import numpy as np
    rng, f32 = np.random.default_rng(seed), np.float32
    rows = [batch, batch, batch, samples * batch, samples * batch]
    layers = [(input_dim, hidden), (hidden, latent), (hidden, latent), (latent, hidden), (hidden, input_dim)]
    weights = [rng.standard_normal((n_out, n_in)).astype(f32) for n_in, n_out in layers]
    inputs = [rng.standard_normal((m, n_in)).astype(f32) for m, (n_in, _) in zip(rows, layers)]
    grads = [rng.standard_normal((m, n_out)).astype(f32) for m, (_, n_out) in zip(rows, layers)]
    outputs = [np.empty((m, n_out), f32) for m, (_, n_out) in zip(rows, layers)]
    weight_grads = [np.empty_like(w) for w in weights]
    input_grads = [np.empty((m, n_in), f32) for m, (n_in, _) in zip(rows, layers)]

    def step():
        for x, w, y in zip(inputs, weights, outputs):
            np.matmul(x, w.T, out=y)
        for i, (x, w, g) in enumerate(zip(inputs, weights, grads)):
            np.matmul(g.T, x, out=weight_grads[i])
            if i:
                np.matmul(g, w, out=input_grads[i])
    return step


def contenders(batch: int, samples: int, seed=0):
    import numpy as np
    import minivae as mv
    from minivae.capture import capture_step
    x = (np.random.default_rng(seed).random((batch, 784), dtype=np.float32) < 0.13).astype(np.float32)

    def eager():
        model = mv.VAE(784, (400,), 20, rng=seed)
        optimizer, rng = mv.Adam(model.parameters(), lr=1e-3), np.random.default_rng(seed)

        def step():
            optimizer.zero_grad()
            model.negative_elbo(mv.Tensor(x), rng, samples).backward()
            optimizer.step()
        return step

    def captured():
        model = mv.VAE(784, (400,), 20, rng=seed)
        optimizer, rng = mv.Adam(model.parameters(), lr=1e-3), np.random.default_rng(seed)
        step = capture_step(model, optimizer, lambda x, rng: model.negative_elbo(x, rng, samples))
        return lambda: step(x, rng)
    return {"eager": eager(), "captured": captured(), "floor": floor_step(batch, samples)}


STARTUP = r"""
import resource, sys, time
started = time.perf_counter()
import numpy as np
import minivae as mv
from minivae.capture import capture_step
x = (np.random.default_rng(0).random((128, 784), dtype=np.float32) < 0.13).astype(np.float32)
model = mv.VAE(784, (400,), 20, rng=0)
optimizer, rng = mv.Adam(model.parameters(), lr=1e-3), np.random.default_rng(0)
if sys.argv[1] == "captured":
    run = capture_step(model, optimizer)
    step = lambda: run(x, rng)
else:
    def step():
        optimizer.zero_grad()
        model.negative_elbo(mv.Tensor(x), rng).backward()
        optimizer.step()
step()
first = time.perf_counter() - started
for _ in range(49):
    step()
print(first * 1e3, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def startup(rounds: int) -> None:
    import subprocess
    import sys
    results = {"eager": [], "captured": []}
    for turn in range(rounds):
        for name in (["eager", "captured"] if turn % 2 == 0 else ["captured", "eager"]):
            out = subprocess.run([sys.executable, "-c", STARTUP, name], capture_output=True, text=True, check=True)
            results[name].append([float(v) for v in out.stdout.split()])
    for name, rows in results.items():
        print(f"{name}: start to first finished step {statistics.median(r[0] for r in rows):.0f} ms, peak resident "
              f"memory after 50 steps {statistics.median(r[1] for r in rows):.1f} MiB (medians of {rounds})")


def main(argv=None) -> None:
    args = parser.parse_args(argv)
    os.environ["OPENBLAS_NUM_THREADS"] = args.threads  # before NumPy loads (it is imported below)
    os.environ["MINIVAE_KERNELS"] = args.backend
    if args.clock == "cpu" and args.threads != "1":
        parser.error("--clock cpu counts this thread only: use it with --threads 1")
    clock = time.perf_counter if args.clock == "wall" else time.thread_time
    print(f"load average before: {os.getloadavg()}; OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, "
          f"{args.backend} kernels, {args.turns} turns, {args.clock} clock", flush=True)
    if args.startup:
        startup(args.startup)
        print(f"load average after: {os.getloadavg()}")
        return
    for config in args.configs.split(","):
        batch, samples = (int(n) for n in config.split("x"))
        runs = contenders(batch, samples)
        names = list(runs)
        times = {name: [] for name in names}
        for turn in range(args.warmup + args.turns):
            order = names[turn % 3:] + names[:turn % 3]
            for name in order:
                started = clock()
                runs[name]()
                elapsed = clock() - started
                if turn >= args.warmup:
                    times[name].append(elapsed * 1e3)
        median = {name: statistics.median(t) for name, t in times.items()}
        ratio = {pair: statistics.median(a / b for a, b in zip(times[pair[0]], times[pair[1]]))
                 for pair in (("eager", "floor"), ("captured", "floor"), ("captured", "eager"))}
        print(f"batch {batch}, S={samples}: eager {median['eager']:.3f} ms, captured {median['captured']:.3f} ms, "
              f"floor {median['floor']:.3f} ms | per-turn medians: eager/floor {ratio['eager', 'floor']:.2f}, "
              f"captured/floor {ratio['captured', 'floor']:.2f}, captured/eager {ratio['captured', 'eager']:.2f}",
              flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
