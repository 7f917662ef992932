"""A benchmark contender in its own process: ``python -m benchmarks.worker CONTENDER CONFIGS_JSON``.

CONFIGS_JSON is a list of configurations (keyword arguments of the contender's ``build``). The
worker answers each JSON line read from stdin with one JSON line:

- ``{"build": i, "warmup": w}``: build configuration i and run w untimed steps (a compiling
  contender compiles here); answers ``{"build_s": seconds, "first_step_s": seconds}``.
- ``{"config": i, "warmup": w, "steps": n}``: w untimed steps, then n timed ones; answers the list
  of their times in seconds (for ``phases``, an object of such lists, one per phase).

An empty line or the end of input ends the process. A contender that fails to build answers
``{"error": "..."}`` and the process exits. The answers go to the original stdout; anything a library
prints goes to stderr instead, so it cannot break the exchange.

One process per contender keeps each library's thread pools apart (PyTorch's OpenMP threads, XLA's
and OpenBLAS's would otherwise compete for the same two cores); the parent alternates between the
processes, which wait blocked on their input meanwhile. Thread counts come from the environment
the parent sets (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, ...); with fewer threads than CPUs the
process is also pinned to that many CPUs, which is what bounds XLA's pool.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback


def limit_cpus(threads: int) -> None:
    """Pin this process to its first ``threads`` CPUs when there are more (no-op where unsupported)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if threads < len(cpus):
            os.sched_setaffinity(0, cpus[:threads])
    except (AttributeError, OSError):
        pass


def build(name: str, config: dict, threads: int):
    from . import contenders
    if name == "phases":
        return contenders.minivae_phases(**config, threads=threads)
    if name not in contenders.CONTENDERS:
        raise SystemExit(f"benchmarks.worker: unknown contender {name!r}")
    return contenders.CONTENDERS[name].build(**config, threads=threads)


def timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def run(contender, n: int):
    if isinstance(contender, dict):
        times = {phase: [] for phase in contender}
        for _ in range(n):
            for phase, function in contender.items():
                times[phase].append(timed(function))
        return times
    return [timed(contender) for _ in range(n)]


def main(argv) -> None:
    name, configs = argv[0], json.loads(argv[1])
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    limit_cpus(threads)
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever a library prints goes to stderr
    built = {}

    def answer(value) -> None:
        answers.write(json.dumps(value) + "\n")
        answers.flush()

    for line in sys.stdin:
        if not line.strip():
            break
        command = json.loads(line)
        if "build" in command:
            index = command["build"]
            try:
                start = time.perf_counter()
                built[index] = build(name, configs[index], threads)
                built_at = time.perf_counter()
                run(built[index], 1)
                first = time.perf_counter()
                run(built[index], max(0, command.get("warmup", 0) - 1))
            except Exception as error:  # reported to the parent, which leaves the contender out
                traceback.print_exc()
                answer({"error": f"{type(error).__name__}: {error}".splitlines()[0][:300]})
                return
            answer({"build_s": built_at - start, "first_step_s": first - built_at})
        else:
            contender = built[command["config"]]
            run(contender, command.get("warmup", 0))
            answer(run(contender, command["steps"]))


if __name__ == "__main__":
    main(sys.argv[1:])
