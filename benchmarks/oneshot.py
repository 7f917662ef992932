"""One-off measurements in a fresh process, printed as JSON: ``python -m benchmarks.oneshot MODE``.

- ``kernels CALLS``: ``benchmarks.micro.time_kernels``: each fused function against its composition.
- ``first-step``: import minivae, build the model, run one step; the wall-clock time (``time.time``)
  when the step finished, and how long the import and the step took. With a fresh
  NUMBA_CACHE_DIR the step includes compiling the kernels.
- ``profile STEPS CONFIG_JSON``: where a minivae step's time goes: every op's forward and backward and the
  Adam updates, timed by wrapping ``Op.__call__``, ``Op.backward`` and ``Adam.update`` (and a fused
  implementation that is a plain function rather than an op), in seconds per step; a call inside a
  timed one counts as part of it (the wrapping itself adds about a microsecond per call).
- ``epoch CONTENDER EXAMPLES``: one epoch of batch-128 steps over EXAMPLES binary images with
  ``minivae`` (kernels from MINIVAE_KERNELS) or ``torch``; peak resident memory after
  the imports, after making the data and the model, after the first step and after the epoch.
- ``train CONTENDER EPOCHS [BATCH [LAUNCHED]]``: what users run: ``minivae`` is ``minivae.training.train``
  (the loop of ``minivae train``, after importing what the command imports) on the embedded MNIST set,
  its step times taken between its ``after_step`` calls; ``captured`` (the step benchmark's captured
  step), ``torch`` and ``jax`` are plain training loops (PyTorch eager, the jitted JAX step) over the
  same digits in the same batch order (the first epoch's permutation of ``minivae train``), each step
  timed with the batch's indexing. The per-step times of every epoch, without the first step of
  each (nothing precedes it to time it from; it compiles where the contender compiles); each epoch's
  seconds per step as ``minivae train`` reports them; and LAUNCHED (``time.time()``) to the first step.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time


def peak_rss_mib() -> float:
    """This process's peak resident memory: VmHWM where /proc has it, else ru_maxrss.

    Linux's ru_maxrss survives exec, so a child started by a large parent would report the
    parent's size; VmHWM belongs to the process's own memory map.
    """
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def first_step() -> dict:
    start = time.perf_counter()
    from benchmarks.config import Config
    from benchmarks.contenders import CONTENDERS
    imported = time.perf_counter()
    CONTENDERS["minivae"].build(Config())()
    return {"import_s": imported - start, "first_step_s": time.perf_counter() - imported, "finished_at": time.time()}


def epoch(contender: str, examples: int, batch: int = 128) -> dict:
    from benchmarks import contenders
    from benchmarks.config import Config
    if contender == "torch":
        import torch  # noqa: F401  (its import counts with the imports)
    imported = peak_rss_mib()
    data = contenders.batch_of(examples, 784)
    config = Config(threads=int(os.environ.get("OMP_NUM_THREADS", "2")))
    step = contenders.minivae_trainer(config) if contender == "minivae" else contenders.torch_trainer(config)
    ready = peak_rss_mib()
    start = time.perf_counter()
    step(data[:batch])
    first_step = peak_rss_mib()  # with the compiled kernels loaded
    for first in range(batch, examples, batch):
        step(data[first:first + batch])
    return {"seconds": time.perf_counter() - start, "rss_after_imports_mib": imported,
            "rss_with_data_and_model_mib": ready, "rss_after_first_step_mib": first_step,
            "peak_rss_mib": peak_rss_mib()}


def train_order(config, n: int):
    """The first epoch's batch order of ``minivae train``: its generator makes the model, then permutes the digits."""
    import minivae as mv
    from minivae.training import generator
    rng = generator(config.seed, "training")
    mv.VAE(config.input_dim, (config.hidden,), config.latent, rng=rng)
    return rng.permutation(n)


def train(contender: str, epochs: int, batch: int = 128, launched: float | None = None, seed: int = 0) -> dict:
    """``epochs`` epochs of ``contender`` on the embedded digits (see the module's docstring). ``step_times_s``:
    every step's seconds but each epoch's first; ``epoch_step_s``: each epoch's seconds per step, all steps
    counted, as ``minivae train`` reports them (``epoch_seconds`` / steps); ``start_to_first_step_s``: from
    ``launched`` (the parent's ``time.time()`` before it started this process) to the first finished step."""
    import math

    import numpy as np

    from minivae.data import load_mnist
    data = load_mnist()
    images, per_epoch = data.train_images, math.ceil(len(data.train_images) / batch)
    stamps = []
    if contender == "minivae":
        import io
        import tempfile

        import minivae.cli  # noqa: F401  (what the command imports counts as it does for ``minivae train``)
        from minivae.training import TrainConfig
        from minivae.training import train as minivae_train
        with tempfile.TemporaryDirectory() as out:
            result = minivae_train(TrainConfig(epochs=epochs, batch_size=batch, seed=seed), out, data=data,
                                   stream=io.StringIO(), after_step=lambda step: stamps.append(time.perf_counter()))
        first_step = time.time() - (time.perf_counter() - stamps[0])
        times = [b - a for e in range(epochs) for a, b in zip(stamps[e * per_epoch:(e + 1) * per_epoch],
                                                              stamps[e * per_epoch + 1:(e + 1) * per_epoch])]
        epoch_step = [m["epoch_seconds"] / per_epoch for m in result.history]
    else:
        from benchmarks import contenders
        from benchmarks.config import Config
        config = Config(batch=batch, seed=seed, threads=int(os.environ.get("OMP_NUM_THREADS", "2")))
        step = {"captured": contenders.minivae_captured_trainer, "torch": contenders.torch_trainer,
                "jax": contenders.jax_trainer}[contender](config)
        order, times, epoch_step, first_step = train_order(config, len(images)), [], [], None
        for epoch in range(epochs):
            permutation = order if epoch == 0 else np.random.default_rng([seed, epoch]).permutation(len(images))
            seconds = 0.0
            for position in range(per_epoch):
                start = time.perf_counter()
                step(images[permutation[position * batch:(position + 1) * batch]])
                stop = time.perf_counter()
                first_step = first_step or time.time()
                seconds += stop - start
                if position:
                    times.append(stop - start)
            epoch_step.append(seconds / per_epoch)
    return {"step_times_s": times, "epoch_step_s": epoch_step, "digits": len(images), "epochs": epochs,
            "batch": batch, "start_to_first_step_s": None if launched is None else first_step - launched}


def profile(steps: int, config=None) -> dict:
    """Seconds per step of each part of ``steps`` minivae steps (of ``config``, a ``benchmarks.config.Config``,
    default the default model's); the wrapped methods are restored afterwards."""
    import functools
    from collections import defaultdict

    from benchmarks.config import Config
    from benchmarks.contenders import CONTENDERS
    from minivae import functions
    from minivae.engine.ops import Op
    from minivae.optim import Adam
    step = CONTENDERS["minivae"].build(config or Config())
    for _ in range(20):
        step()
    spent, depth = defaultdict(float), [0]

    def timing(label, method):
        """``method`` timed under ``label``; a call made inside a timed one (an op applied to arrays
        within a backward, say) counts as part of the outer one, so no time is counted twice."""
        def timed(self, *args, **kwargs):
            if depth[0]:
                return method(self, *args, **kwargs)
            depth[0] += 1
            start = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                spent[label(self)] += time.perf_counter() - start
                depth[0] -= 1
        return timed

    originals = [(Op, "__call__", Op.__call__), (Op, "backward", Op.backward), (Adam, "update", Adam.update)]
    originals += [(f, "implementation", f.implementation) for f in vars(functions).values()
                  if isinstance(f, functions.ModelFunction)]
    Op.__call__ = timing(lambda op: f"forward {op.name}", Op.__call__)
    Op.backward = timing(lambda op: f"backward {op.name}", Op.backward)
    Adam.update = timing(lambda optimizer: "adam update (all parameters)", Adam.update)

    def call(implementation, *args, **kwargs):
        return implementation(*args, **kwargs)

    # A fused implementation that is a plain function, not an op, is timed as a forward of its function.
    for function in vars(functions).values():
        if isinstance(function, functions.ModelFunction) and function.implementation is not None \
                and not isinstance(function.implementation, Op):
            label = f"forward {function.name} (fused: {function.implementation.__name__})"
            function.implementation = functools.partial(timing(lambda _, label=label: label, call),
                                                        function.implementation)
    try:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        total = time.perf_counter() - start
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
    per_step = {label: seconds / steps for label, seconds in sorted(spent.items(), key=lambda kv: -kv[1])}
    per_step["everything else (graph walk, gradient sums, Python)"] = total / steps - sum(per_step.values())
    return {"step_s": total / steps, "parts_s": per_step}


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "first-step":
        result = first_step()
    elif mode == "kernels":
        from benchmarks.micro import time_kernels
        result = time_kernels(int(args[0]))
    elif mode == "train":
        from benchmarks.worker import limit_cpus
        limit_cpus(int(os.environ.get("OMP_NUM_THREADS", "2")))
        result = train(args[0], int(args[1]), *(int(a) for a in args[2:3]), *(float(a) for a in args[3:4]))
    elif mode == "profile":
        from benchmarks.config import Config
        result = profile(int(args[0]), Config(**json.loads(args[1])))
    else:
        result = epoch(args[0], int(args[1]))
    print(json.dumps(result))
