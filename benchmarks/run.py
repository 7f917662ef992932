"""Benchmark minivae's training step: ``python -m benchmarks.run [--quick] [--json PATH]``.

Measures, in one run, and prints as markdown tables (and writes as JSON):

1. step: the default model's training step (batch 128, float32): minivae on the Numba kernels,
   minivae on the NumPy references (MINIVAE_KERNELS=numpy), the floor (the step's matrix
   products alone, in NumPy) and PyTorch eager when torch is importable; medians over the steps
   after warm-up, with ratios; and the minivae step cut into forward, backward and optimizer;
   profile: the time of every op's forward and VJPs and of the Adam updates, within a step;
2. kernels: each kernel against its NumPy reference;
3. scaling: batch 32…1024 and hidden 100…1600, on 1 and 2 threads: time per step and per example;
4. memory: peak resident memory of one training epoch;
5. start-up: the first step of a process with an empty kernel cache (compilation included) and
   of a process with a warm one, timed from the process's start.

Every contender runs in its own process (``benchmarks.worker``), and the processes take turns, a
block of steps each, so that noise on the machine falls on all of them alike. Between turns the
run pauses long enough for the last process's idle BLAS and OpenMP threads to stop spinning
(they spin for up to about 0.1 s after their last call), so that no contender shares the cores
with another's threads; each turn starts with one untimed step.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import contenders

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT = {"batch": 128, "hidden": 400, "latent": 20, "input_dim": 784}
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS")
BLOCK = 10
PAUSE_S = 0.25


def thread_env(threads: int, **extra) -> dict:
    """This environment with every thread pool (OpenBLAS, OpenMP/PyTorch, Numba) set to ``threads``."""
    env = {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES}, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def torch_available() -> bool:
    import importlib.util
    return importlib.util.find_spec("torch") is not None


class Worker:
    """A contender in its own process (see ``benchmarks.worker``)."""

    def __init__(self, contender: str, config: dict, env: dict):
        self.process = subprocess.Popen([sys.executable, "-m", "benchmarks.worker", contender, json.dumps(config)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        if self.process.stdout.readline().strip() != "ready":
            self.process.kill()
            raise RuntimeError(f"benchmarks: the {contender} worker did not start")

    def run(self, steps: int):
        self.process.stdin.write(f"{steps}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def alternate(workers: dict, steps: int) -> dict:
    """Per-step times of every worker, ``steps`` each, taken in turns of BLOCK steps."""
    times = {name: [] for name in workers}
    for _ in range(max(1, steps // BLOCK)):
        for name, worker in workers.items():
            time.sleep(PAUSE_S)
            times[name] += worker.run(BLOCK)
    for worker in workers.values():
        worker.close()
    return times


def median(values) -> float:
    return float(statistics.median(values))


# ------------------------------------------------------------------------ 1. the training step
def bench_step(steps: int, threads: int) -> dict:
    env = thread_env(threads)
    workers = {"minivae (numba)": Worker("minivae", DEFAULT, env),
               "minivae (numpy references)": Worker("minivae", DEFAULT, thread_env(threads, MINIVAE_KERNELS="numpy")),
               "floor (matrix products)": Worker("floor", DEFAULT, env)}
    if torch_available():
        workers["pytorch eager"] = Worker("torch", DEFAULT, env)
    times = alternate(workers, steps)
    result = {name: {"median_s": median(t), "steps": len(t)} for name, t in times.items()}

    phases = {"numba": Worker("phases", DEFAULT, env), "numpy": Worker("phases", DEFAULT, thread_env(threads, MINIVAE_KERNELS="numpy"))}
    phase_times = {backend: {} for backend in phases}
    for _ in range(max(1, steps // BLOCK)):
        for backend, worker in phases.items():
            time.sleep(PAUSE_S)
            for phase, t in worker.run(BLOCK).items():
                phase_times[backend].setdefault(phase, []).extend(t)
    for worker in phases.values():
        worker.close()
    return {"contenders": result,
            "phases": {backend: {phase: median(t) for phase, t in p.items()} for backend, p in phase_times.items()}}


def step_ratios(step: dict) -> dict:
    c = {name: v["median_s"] for name, v in step["contenders"].items()}
    floor, fast, reference = c["floor (matrix products)"], c["minivae (numba)"], c["minivae (numpy references)"]
    ratios = {"minivae / floor": fast / floor,
              "numpy references / floor": reference / floor,
              "numpy-reference overhead / numba overhead (above the floor)": (reference - floor) / (fast - floor)}
    if "pytorch eager" in c:
        ratios["minivae / pytorch"] = fast / c["pytorch eager"]
        ratios["pytorch / floor"] = c["pytorch eager"] / floor
    return ratios


# ------------------------------------------------------------------------ 3. scaling
def scaling_configs(quick: bool) -> list[dict]:
    batches = (32, 128, 1024) if quick else (32, 64, 128, 256, 512, 1024)
    hiddens = (100, 400, 1600) if quick else (100, 200, 400, 800, 1600)
    configs = [{**DEFAULT, "batch": b} for b in batches]
    configs += [{**DEFAULT, "hidden": h} for h in hiddens if h != DEFAULT["hidden"]]
    return configs


def bench_scaling(steps: int, quick: bool) -> list[dict]:
    rows = []
    for threads in (1, 2):
        env = thread_env(threads)
        for config in scaling_configs(quick):
            workers = {"minivae": Worker("minivae", config, env), "floor": Worker("floor", config, env)}
            if torch_available():
                workers["pytorch"] = Worker("torch", config, env)
            times = alternate(workers, steps)
            row = {"threads": threads, "batch": config["batch"], "hidden": config["hidden"]}
            for name, t in times.items():
                row[f"{name}_s"] = median(t)
                row[f"{name}_per_example_s"] = median(t) / config["batch"]
            rows.append(row)
    return rows


# ------------------------------------------------------------------------ 4. memory, 5. start-up
def oneshot(args: list, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.oneshot", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_profile(steps: int, threads: int) -> dict:
    return {backend: oneshot(["profile", str(steps)], thread_env(threads, MINIVAE_KERNELS=backend))
            for backend in ("numba", "numpy")}


def bench_memory(examples: int, threads: int) -> dict:
    runs = {"minivae (numba)": ("minivae", thread_env(threads)),
            "minivae (numpy references)": ("minivae", thread_env(threads, MINIVAE_KERNELS="numpy"))}
    if torch_available():
        runs["pytorch eager"] = ("torch", thread_env(threads))
    return {name: oneshot(["epoch", contender, str(examples)], env) for name, (contender, env) in runs.items()}


def bench_startup(threads: int, repeats: int) -> dict:
    def from_start(env):
        started = time.time()
        result = oneshot(["first-step"], env)
        return {**result, "start_to_first_step_s": result["finished_at"] - started}

    runs = {"cold": [], "warm": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            env = thread_env(threads, NUMBA_CACHE_DIR=cache)
            runs["cold"].append(from_start(env))
            runs["warm"].append(from_start(env))
    summary = {kind: {key: median([r[key] for r in rs]) for key in ("import_s", "first_step_s", "start_to_first_step_s")}
               for kind, rs in runs.items()}
    summary["compile_s"] = summary["cold"]["first_step_s"] - summary["warm"]["first_step_s"]
    return summary


# ------------------------------------------------------------------------ report
def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy
    import numba
    versions = {"python": platform.python_version(), "numpy": numpy.__version__, "numba": numba.__version__}
    if torch_available():
        import torch
        versions["torch"] = torch.__version__
    return {"cpu": cpu, "cores": os.cpu_count(), "date": datetime.date.today().isoformat(), "versions": versions,
}


def table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


def report(results: dict) -> str:
    m = results["machine"]
    load = " → ".join(f"{results[key][0]:.2f}" for key in ("load_average_at_start", "load_average_at_end") if key in results)
    out = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['date']}; threads {results['threads']}; "
           + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + f"; 1-minute load average {load}"]
    if "step" in results:
        step = results["step"]
        floor = step["contenders"]["floor (matrix products)"]["median_s"]
        out += ["", "### Training step (batch 128, 784-400-20, float32)", "",
                f"The floor: the step's 14 matrix products alone, {contenders.floor_flops() / 1e6:.1f} MFLOP "
                f"({contenders.floor_flops() / floor / 1e9:.1f} GFLOP/s).", "",
                table(["contender", "median ms/step", "× floor", "steps"],
                      [[name, ms(v["median_s"]), f"{v['median_s'] / floor:.2f}", v["steps"]]
                       for name, v in step["contenders"].items()]),
                "", table(["ratio", "value"], [[k, f"{v:.2f}"] for k, v in step["ratios"].items()]),
                "", table(["phase", "numba ms", "numpy references ms"],
                          [[phase, ms(t), ms(step["phases"]["numpy"][phase])]
                           for phase, t in step["phases"]["numba"].items()])]
    if "profile" in results:
        p = results["profile"]
        labels = list(p["numba"]["parts_s"])
        out += ["", "### Where a minivae step's time goes (µs per step; matrix products are inside the linear ops)", "",
                table(["part", "numba", "numpy references"],
                      [[label, us(p["numba"]["parts_s"][label]), us(p["numpy"]["parts_s"].get(label, float("nan")))]
                       for label in labels] + [["whole step", us(p["numba"]["step_s"]), us(p["numpy"]["step_s"])]])]
    if "kernels" in results:
        out += ["", "### Kernels against their NumPy references (float32)", "",
                table(["kernel", "numba µs", "numpy µs", "speed-up"],
                      [[r["kernel"], us(r["numba_s"]), us(r["numpy_s"]), f"{r['speedup']:.1f}×"]
                       for r in results["kernels"]])]
    if "scaling" in results:
        names = [key[:-2] for key in results["scaling"][0] if key.endswith("_s") and "per_example" not in key]
        out += ["", "### Scaling (ms per step; µs per example)", "",
                table(["threads", "batch", "hidden"] + [f"{n} ms" for n in names] + [f"{n} µs/ex" for n in names]
                      + ["minivae / floor"],
                      [[r["threads"], r["batch"], r["hidden"]] + [ms(r[f"{n}_s"]) for n in names]
                       + [us(r[f"{n}_per_example_s"]) for n in names] + [f"{r['minivae_s'] / r['floor_s']:.2f}"]
                       for r in results["scaling"]])]
    if "memory" in results:
        out += ["", f"### Memory: one epoch of {results['memory_examples']:,} examples, batch 128", "",
                table(["contender", "after imports MiB", "+ data and model MiB", "+ first step MiB", "peak MiB",
                       "peak − first step MiB", "epoch s"],
                      [[name, f"{r['rss_after_imports_mib']:.0f}", f"{r['rss_with_data_and_model_mib']:.0f}",
                        f"{r['rss_after_first_step_mib']:.0f}", f"{r['peak_rss_mib']:.0f}",
                        f"{r['peak_rss_mib'] - r['rss_after_first_step_mib']:.0f}", f"{r['seconds']:.2f}"]
                       for name, r in results["memory"].items()])]
    if "startup" in results:
        s = results["startup"]
        out += ["", "### Start-up (medians; a process's start to its first finished step)", "",
                table(["kernel cache", "import s", "first step s", "start → first step s"],
                      [[kind, f"{s[kind]['import_s']:.2f}", f"{s[kind]['first_step_s']:.2f}",
                        f"{s[kind]['start_to_first_step_s']:.2f}"] for kind in ("cold", "warm")]),
                "", f"Compilation (cold − warm first step): {s['compile_s']:.2f} s"]
    return "\n".join(out)


SECTIONS = ("step", "profile", "kernels", "scaling", "memory", "startup")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps and configurations (about 2 minutes)")
    parser.add_argument("--steps", type=int, help="steps per contender for the training step (default 300; quick 50)")
    parser.add_argument("--threads", type=int, default=2, help="threads of every pool (default 2)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    parser.add_argument("--json", type=Path, help="where to write the results (default benchmarks/results/<time>.json)")
    args = parser.parse_args(argv)
    steps = args.steps or (50 if args.quick else 300)

    os.environ.update({name: str(args.threads) for name in THREAD_VARIABLES})  # before NumPy loads
    results = {"threads": args.threads, "quick": args.quick, "machine": machine(),
               "load_average_at_start": os.getloadavg()}
    if "step" in args.only:
        results["step"] = bench_step(steps, args.threads)
        results["step"]["ratios"] = step_ratios(results["step"])
    if "profile" in args.only:
        results["profile"] = bench_profile(steps, args.threads)
    if "kernels" in args.only:
        from .micro import time_kernels
        results["kernels"] = time_kernels(calls=100 if args.quick else 1000)
    if "scaling" in args.only:
        results["scaling"] = bench_scaling(steps=20 if args.quick else 60, quick=args.quick)
    if "memory" in args.only:
        results["memory_examples"] = 10_000 if args.quick else 60_000
        results["memory"] = bench_memory(results["memory_examples"], args.threads)
    if "startup" in args.only:
        results["startup"] = bench_startup(args.threads, repeats=1 if args.quick else 3)

    results["load_average_at_end"] = os.getloadavg()
    print(report(results))
    path = args.json or RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    print(f"\nResults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
