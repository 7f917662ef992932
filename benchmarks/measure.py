"""Interleaved turns of every contender's process, the fairness check, and what they measured.

Every contender runs in its own process (``benchmarks.worker``) and the processes take turns, so that
noise on the machine falls on all of them alike; the order of the turns rotates every round. A turn
starts after a pause (the last process's idle BLAS and OpenMP threads stop spinning) with its own
untimed warm-up, then times steps for about ``Options.turn_s``. The fairness check: before and after
the turns every contender also runs its own tight loop (one long uninterrupted run); its suite time
is its steady state if the suite's median lies within the tight loops' range, widened by TOLERANCE.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

from benchmarks.config import Config, Options
from benchmarks.contenders import CONTENDERS, available
from benchmarks.worker import Worker, WorkerFailed, progress, thread_env

TOLERANCE = 0.03  # the fairness check's margin around the tight loops' range


@dataclass
class Timing:
    """One contender's times on one case of a section: ``values``, one list per turn (or process)."""

    section: str
    case: str
    label: str
    values: list[list[float]]
    config: Config | None = None
    tight: list[float] = field(default_factory=list)  # the tight loops' medians, before and after
    first_step_s: float | None = None  # the build and the first step
    unit: str = "second"

    @property
    def all_values(self) -> list[float]:
        return [v for turn in self.values for v in turn]

    @property
    def median(self) -> float:
        return statistics.median(self.all_values)

    @property
    def spread(self) -> tuple[float, float]:
        """The first and third quartiles of every value."""
        values = self.all_values
        if len(values) < 2:
            return values[0], values[0]
        low, _, high = statistics.quantiles(values, n=4)
        return low, high

    @property
    def within_noise(self) -> bool | None:
        """The fairness check: the suite's median within the tight loops' range, widened by TOLERANCE."""
        if len(self.tight) < 2:
            return None
        return min(self.tight) * (1 - TOLERANCE) <= self.median <= max(self.tight) * (1 + TOLERANCE)

    def benchmarks(self) -> list:
        """As pyperf benchmarks (one run per turn), for ``python -m pyperf compare_to`` and ``stats``."""
        import pyperf
        name = f"{self.section} / {self.case} / {self.label}"

        def benchmark(name, runs):
            return pyperf.Benchmark([pyperf.Run(values, metadata={"name": name, "unit": self.unit},
                                                collect_metadata=False) for values in runs if values])
        made = [benchmark(name, self.values)]
        return made + ([benchmark(f"{name} (tight loops)", [self.tight])] if self.tight else [])


class Pool:
    """One worker per available contender of ``names``; a contender missing or failing is left out with a note."""

    def __init__(self, names, configs: list[Config], env: dict | None = None):
        present, self.notes = available(names)
        self.configs, self.built = configs, {}
        self.workers = {name: Worker(name, configs, thread_env(configs[0].threads, **CONTENDERS[name].env,
                                                               **(env or {}))) for name in present}

    def drop(self, name: str, error: Exception) -> None:
        self.notes.append(f"{CONTENDERS[name].label}: left out, {error}")
        progress(self.notes[-1])
        self.workers.pop(name).close()

    def ask(self, name: str, *command):
        """Send ``command`` to contender ``name`` (unless empty) and return its answer, or None if it failed."""
        try:
            if command:
                self.workers[name].send(*command)
            return self.workers[name].receive()
        except WorkerFailed as error:
            self.drop(name, error)
            return None

    def build(self, config: int, warmup: int) -> None:
        """Configuration ``config`` built in every worker at once (the compilers compile now), then warmed up."""
        if config in self.built:
            return
        for worker in self.workers.values():
            worker.send("build", config, warmup)
        self.built[config] = {}
        for name in list(self.workers):
            seconds = self.ask(name)
            if seconds is not None:
                self.built[config][name] = seconds
                progress(f"  {CONTENDERS[name].label}: {seconds:.1f} s to its first step")

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()
        self.workers = {}


def turn_sizes(step_s: float, options: Options) -> tuple[int, int]:
    """(warm-up steps, timed steps) of a turn: about ``warm_s`` of warm-up (none for steps over 0.5 s,
    which amortize a wake-up alone) and about ``turn_s`` of timed steps (at least 5, or 1 for long steps)."""
    warmup = 0 if step_s > 0.5 else max(3, math.ceil(options.warm_s / step_s))
    return warmup, max(5 if step_s < 0.5 else 1, math.ceil(options.turn_s / step_s))


def interleave(pool: Pool, config: int, options: Options, section: str, case: str, rounds: int,
               tight: bool = True) -> dict[str, Timing]:
    """Every worker's step times on configuration ``config``: ``rounds`` turns each, in rotating order,
    between two tight loops of about ``options.tight_s`` each (unless ``tight`` is false)."""
    pool.build(config, options.warmup_steps)
    sizes, step_s = {}, {}
    for name in list(pool.workers):  # the step's time, from one step if that is long, else five
        times = pool.ask(name, "run", config, 0, 1)
        if times is not None and times[0] < 0.1:
            times = pool.ask(name, "run", config, 0, 5)
        if times is not None:
            step_s[name], sizes[name] = statistics.median(times), turn_sizes(statistics.median(times), options)

    def tight_loops(medians: dict) -> None:
        for name in list(pool.workers):
            time.sleep(options.pause_s)
            times = pool.ask(name, "run", config, sizes[name][0], max(10, math.ceil(options.tight_s / step_s[name])))
            if times is not None:
                medians.setdefault(name, []).append(statistics.median(times))

    loops, turns = {}, {name: [] for name in pool.workers}
    if tight:
        tight_loops(loops)
    for r in range(rounds):
        progress(f"{section}, {case}: round {r + 1} of {rounds}")
        names = list(pool.workers)
        for name in names[r % max(1, len(names)):] + names[:r % max(1, len(names))]:
            time.sleep(options.pause_s)
            times = pool.ask(name, "run", config, *sizes[name])
            if times is not None:
                turns[name].append(times)
    if tight:
        tight_loops(loops)
    return {name: Timing(section, case, CONTENDERS[name].label, turns[name], pool.configs[config],
                         loops.get(name, []), pool.built[config].get(name)) for name in pool.workers}
