"""A benchmark contender in its own process: ``python -m benchmarks.worker CONTENDER CONFIG_JSON``.

After building the contender and warming it up it prints ``ready``; then each line ``n`` read
from stdin runs one untimed step and n timed steps and answers with a JSON list of their times in seconds (for ``phases``, a
JSON object of such lists, one per phase). An empty line or end of input ends the process.

One process per contender keeps each library's thread pool apart (PyTorch's OpenMP threads and
OpenBLAS's threads would otherwise compete for the same two cores); the parent alternates between
the processes, which wait blocked on their input meanwhile. Thread counts come from the
environment the parent sets (OPENBLAS_NUM_THREADS, NUMBA_NUM_THREADS, OMP_NUM_THREADS).
"""
from __future__ import annotations

import json
import os
import sys
import time

from . import contenders

WARMUP_STEPS = 20


def build(name: str, config: dict):
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    if name == "minivae":
        return contenders.minivae_step(**config)
    if name == "floor":
        return contenders.floor_step(**config)
    if name == "torch":
        step = contenders.torch_step(**config, threads=threads)
        if step is None:
            raise SystemExit("torch is not importable")
        return step
    if name == "phases":
        return contenders.minivae_phases(**config)
    raise SystemExit(f"benchmarks.worker: unknown contender {name!r}")


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
    name, config = argv[0], json.loads(argv[1])
    contender = build(name, config)
    run(contender, WARMUP_STEPS)
    print("ready", flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        run(contender, 1)  # wakes the thread pools after the pause between turns
        print(json.dumps(run(contender, int(line))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
