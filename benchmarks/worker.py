"""Each contender in its own process, ``python -m benchmarks.worker NAME``: built once, then timed turn by
turn as the parent asks.

One process per contender keeps each library's thread pools apart (PyTorch's OpenMP threads, XLA's
and OpenBLAS's would otherwise compete for the same two cores); the parent alternates between the
processes, which wait blocked on their input meanwhile. A process starts with its contender's
environment (thread counts, MINIVAE_KERNELS), and with fewer threads than CPUs it is pinned to that
many CPUs, which is what bounds XLA's pool. Commands and answers are pickled on stdin and stdout;
whatever a library prints goes to stderr, a log file whose last line is reported if the process ends.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchmarks.config import THREAD_VARIABLES, Config

ROOT = Path(__file__).resolve().parent.parent


class WorkerFailed(RuntimeError):
    """A contender's process failed to build or to run its step, or ended."""


def thread_env(threads: int, **extra) -> dict:
    """This environment with every thread pool (OpenBLAS, OpenMP/PyTorch, Numba) set to ``threads``."""
    env = {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES}, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def limit_cpus(threads: int) -> None:
    """Pin this process to its first ``threads`` CPUs when there are more (no-op where unsupported)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if threads < len(cpus):
            os.sched_setaffinity(0, cpus[:threads])
    except (AttributeError, OSError):
        pass


def timed(step, n: int) -> list[float]:
    """The seconds of each of ``n`` calls of ``step``."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def serve(name: str) -> None:
    """The process's loop. First it reads its configurations; then ``("build", i, warmup)`` builds
    configuration i, runs it once and ``warmup`` times more (answers the seconds to the first finished
    step), and ``("run", i, warmup, n)`` runs ``warmup`` untimed steps and answers n steps' times. A
    failure answers ``{"error": its line}`` and ends the process."""
    from benchmarks.contenders import CONTENDERS
    commands, answers = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints goes to stderr
    configs: list[Config] = pickle.load(commands)
    limit_cpus(configs[0].threads)
    built = {}
    while True:
        try:
            command, index, warmup, *steps = pickle.load(commands)
        except EOFError:
            return
        try:
            if command == "build":
                start = time.perf_counter()
                built[index] = CONTENDERS[name].build(configs[index])
                built[index]()
                first_step_s = time.perf_counter() - start
            timed(built[index], warmup)
            answer = first_step_s if command == "build" else timed(built[index], steps[0])
        except Exception as error:  # the parent leaves the contender out with this line
            traceback.print_exc()
            answer = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:300]}
        pickle.dump(answer, answers)
        answers.flush()
        if isinstance(answer, dict):
            return


class Worker:
    """Contender ``name`` in its own process, for the configurations ``configs``."""

    def __init__(self, name: str, configs: list[Config], env: dict):
        self.name, self.log = name, tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen([sys.executable, "-m", "benchmarks.worker", name], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log, env=env, cwd=ROOT)
        self.send(configs)

    def send(self, *command) -> None:
        try:
            pickle.dump(command[0] if len(command) == 1 else command, self.process.stdin)
            self.process.stdin.flush()
        except OSError:
            pass  # the answer's absence reports it

    def receive(self):
        """The answer to the last command; WorkerFailed if the contender failed or its process ended."""
        try:
            answer = pickle.load(self.process.stdout)
        except EOFError:
            self.process.wait()
            self.log.seek(0)
            lines = [line for line in self.log.read().splitlines() if line.strip()]
            raise WorkerFailed(f"its process ended (exit status {self.process.returncode})"
                               + (f": {lines[-1][:300]}" if lines else "")) from None
        if isinstance(answer, dict):
            raise WorkerFailed(answer["error"])
        return answer

    def close(self) -> None:
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    serve(sys.argv[1])
