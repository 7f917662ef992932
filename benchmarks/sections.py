"""The sections of ``python -m benchmarks.run``: each measures in child processes and returns ``Measured``.

- step: the training step at the model's batch, at batch 32 and at S = 10, every contender;
- scaling: ms per step against batch size (and ``--hiddens``), every contender (with step, one pool);
- evaluation: ``minivae evaluate``'s importance-weighted log-likelihood against its own products;
- profile: where a minivae step's time goes, op by op, on both backends;
- kernels: each fused function against its composition, and Adam's kernel against its NumPy form;
- train: the per-step time inside ``minivae train`` against the captured step and plain PyTorch and JAX
  loops over the same batches;
- memory: peak resident memory of one epoch; startup: a new process's start to its first step.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from benchmarks.config import Config, Options
from benchmarks.contenders import missing
from benchmarks.measure import Pool, Timing, interleave
from benchmarks.worker import ROOT, WorkerFailed, progress, thread_env


@dataclass
class Measured:
    """What sections measured: timings, notes on what was left out, the profile and the memory."""

    timings: list[Timing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profile: dict[str, dict[str, float]] = field(default_factory=dict)  # backend → part → seconds per step
    memory: dict[str, dict[str, float]] = field(default_factory=dict)  # run → stage → MiB (or seconds)

    def add(self, other: Measured) -> None:
        self.timings += other.timings
        self.notes += [note for note in other.notes if note not in self.notes]
        self.profile.update(other.profile)
        self.memory.update(other.memory)

    def find(self, section: str, case: str | None = None) -> list[Timing]:
        return [t for t in self.timings if t.section == section and case in (None, t.case)]


def step_cases(model: Config) -> dict[str, Config]:
    return {f"batch {model.batch}": model, "batch 32": model.replace(batch=32), "S = 10": model.replace(samples=10)}


def scaling_cases(options: Options) -> dict[str, Config]:
    """Batch sizes at the model's hidden width, then ``--hiddens`` at its batch."""
    model = options.model
    return {**{f"batch {b}, hidden {model.hidden}": model.replace(batch=b) for b in options.batches},
            **{f"batch {model.batch}, hidden {h}": model.replace(hidden=h) for h in options.hiddens}}


def steps(options: Options) -> Measured:
    """The step and scaling sections on one pool of workers; scaling reuses the step's configurations."""
    step = step_cases(options.model) if "step" in options.sections else {}
    scaling = scaling_cases(options) if "scaling" in options.sections else {}
    configs = list(dict.fromkeys([*step.values(), *scaling.values()]))
    pool, measured = Pool(options.contenders, configs), Measured()
    try:
        for case, config in step.items():
            progress(f"step, {case}: building {len(pool.workers)} contenders (compilers compile now)")
            measured.timings += interleave(pool, configs.index(config), options, "step", case, options.rounds).values()
        for case, config in scaling.items():
            if config not in step.values():
                progress(f"scaling, {case}: building")
                measured.timings += interleave(pool, configs.index(config), options, "scaling", case,
                                               max(2, options.rounds // 2), tight=False).values()
    finally:
        pool.close()
    measured.notes += pool.notes
    return measured


def evaluation(options: Options) -> Measured:
    """``minivae evaluate`` at k importance samples on held-out digits against its products alone."""
    config = options.model.replace(batch=options.eval_digits, samples=options.eval_k)
    pool, measured = Pool(("minivae-evaluate", "evaluate-floor"), [config]), Measured()
    try:
        progress(f"evaluation: k = {options.eval_k} on {options.eval_digits} held-out digits")
        pool.build(0, 1)
        case = f"k = {options.eval_k}, {options.eval_digits} digits"
        measured.timings += interleave(pool, 0, options, "evaluation", case, 3, tight=False).values()
    finally:
        pool.close()
    measured.notes += pool.notes
    return measured


def oneshot(args: list, env: dict) -> dict:
    """``python -m benchmarks.oneshot ARGS`` in a fresh process: its JSON answer."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.oneshot", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=ROOT)
    if done.returncode:
        lines = [s for s in done.stderr.splitlines() if s.strip()]
        raise WorkerFailed(f"exit status {done.returncode}" + (f": {lines[-1][:300]}" if lines else ""))
    return json.loads(done.stdout.strip().splitlines()[-1])


def backend_env(options: Options, backend: str) -> dict:
    return thread_env(options.model.threads, MINIVAE_KERNELS=backend)


def profile(options: Options) -> Measured:
    model = json.dumps(dataclasses.asdict(options.model))
    return Measured(profile={backend: oneshot(["profile", 20 * options.rounds, model], backend_env(options, backend))
                             for backend in ("numba", "reference")})


def kernels(options: Options) -> Measured:
    cases = oneshot(["kernels", options.kernel_calls], thread_env(options.model.threads))
    return Measured([Timing("kernels", case["case"], backend, [case[backend]])
                     for case in cases for backend in ("numba", "reference")])


TRAIN_RUNS = {"minivae": ("minivae train", "minivae"), "captured": ("captured step loop", "minivae-captured"),
              "torch": ("pytorch eager loop", "torch"), "jax": ("jax.jit loop", "jax-jit")}


def train(options: Options) -> Measured:
    """Whole training runs of ``options.train_epochs`` epochs on the embedded MNIST digits, alternated, at each
    of ``options.train_batches``: ``minivae train`` against the step benchmark's captured step in a plain loop
    over the same batches (the same process conditions: a fresh process each, the same threads), and the peers.

    Per contender and batch: a "train" Timing of the steps (each epoch's first left out), with the median start
    to first step as its ``first_step_s``, and a "train epochs" Timing of the last epoch's seconds per step as
    ``minivae train`` reports them (``epoch_seconds`` / steps)."""
    measured = Measured(notes=[why for _, contender in TRAIN_RUNS.values() if (why := missing(contender))])
    for batch in options.train_batches:
        runs = {name: [] for name, (_, contender) in TRAIN_RUNS.items() if not missing(contender)}
        for r in range(options.train_rounds):
            for name in list(runs):
                progress(f"train, batch {batch}: {TRAIN_RUNS[name][0]}, run {r + 1} of {options.train_rounds}")
                try:
                    runs[name].append(oneshot(["train", name, options.train_epochs, batch, time.time()],
                                              thread_env(options.model.threads)))
                except WorkerFailed as error:
                    measured.notes.append(f"train section, {TRAIN_RUNS[name][0]}, batch {batch}: left out, {error}")
                    runs.pop(name)
        for name, results in runs.items():
            case = f"{options.train_epochs} epoch{'s' if options.train_epochs > 1 else ''} of " \
                   f"{results[0]['digits']:,} digits, batch {batch}"
            first = statistics.median(r["start_to_first_step_s"] for r in results)
            measured.timings += [Timing("train", case, TRAIN_RUNS[name][0], [r["step_times_s"] for r in results],
                                        first_step_s=first),
                                 Timing("train epochs", case, TRAIN_RUNS[name][0],
                                        [[r["epoch_step_s"][-1]] for r in results])]
    return measured


def memory(options: Options) -> Measured:
    runs = {"minivae (numba)": ("minivae", backend_env(options, "numba")),
            "minivae (reference compositions)": ("minivae", backend_env(options, "reference"))}
    if not missing("torch"):
        runs["pytorch eager"] = ("torch", thread_env(options.model.threads))
    return Measured(memory={label: oneshot(["epoch", contender, options.memory_examples], env)
                            for label, (contender, env) in runs.items()})


def startup(options: Options) -> Measured:
    """A new process's start to its first finished step, with a fresh kernel cache (cold) and with the one
    it left (warm), alternated."""
    runs = {(kind, part): [] for kind in ("cold", "warm") for part in ("import", "first step", "start to first step")}
    for _ in range(options.startup_rounds):
        with tempfile.TemporaryDirectory() as cache:
            for kind in ("cold", "warm"):
                started = time.time()
                result = oneshot(["first-step"], thread_env(options.model.threads, NUMBA_CACHE_DIR=cache))
                for part, seconds in (("import", result["import_s"]), ("first step", result["first_step_s"]),
                                      ("start to first step", result["finished_at"] - started)):
                    runs[kind, part].append([seconds])
    return Measured([Timing("startup", f"{kind} kernel cache", part, values) for (kind, part), values in runs.items()])


SECTIONS = {"step": steps, "scaling": steps, "evaluation": evaluation, "profile": profile, "kernels": kernels,
            "train": train, "memory": memory, "startup": startup}
