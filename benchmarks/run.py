"""Benchmark minivae's training step against its floor and every peer: ``python -m benchmarks.run [--quick]``.

Measures, in one run, and prints as markdown tables (and writes as JSON, with PNG charts beside it):

- step: the training step of the default model (784-400-20, batch 128, S = 1, float32), at batch 32
  and with S = 10 samples per digit: every contender of ``benchmarks.contenders.CONTENDERS`` in its
  own process — minivae on the fused Numba kernels and on the reference backend (every function as
  its composition of engine primitives), the floor (the step's matrix products alone), PyTorch
  eager, ``torch.compile`` of the whole step, the whole step under ``jax.jit``, HIPS autograd — with
  ratios, the targets, and each contender's time in the suite against its own tight loop (the
  fairness check); and the minivae step cut into its phases;
- profile: the time of every op's forward and backward and of the Adam updates within a step;
- kernels: each fused function (forward and backward) against its composition of engine primitives,
  and Adam's kernel against its NumPy reference;
- scaling: ms per step against batch size (and the hidden widths ``--hiddens`` asks for) for every contender;
- evaluation: ``VAE.importance_weighted_log_likelihood`` at k = 5000 on held-out digits as
  ``minivae evaluate`` calls it, against its floor (its encoder and decoder products alone);
- train: the per-step time inside ``minivae train`` against plain PyTorch and JAX training loops on
  the same digits and batch order, whole runs alternated;
- memory: peak resident memory of one training epoch;
- start-up: a new process's start to its first finished step, with a cold and a warm kernel cache.

A quick run (``--quick``) takes fewer rounds, batch sizes and digits, and leaves out the two longest
builds, ``torch.compile`` and the evaluation section, unless ``--contenders`` or ``--only`` names them.

Fairness: every contender runs in its own process (``benchmarks.worker``), and the processes take
turns, so that noise on the machine falls on all of them alike. Each turn is long (about 0.3 s of
timed steps) and starts with its own warm-up steps (about 0.1 s), after a pause in which the last
process's idle BLAS and OpenMP threads stop spinning; the order of the turns rotates every round.
Each contender's own tight loop (one long uninterrupted run, before and after the turns) is
measured too, and the report sets the two side by side.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import contenders
from benchmarks.contenders import CONTENDERS, DEFAULT, STEP_CONTENDERS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS")
WARMUP_STEPS = 20      # untimed steps after a configuration is built (a compiling contender compiles here)
PAUSE_S = 0.2          # between turns: the last process's idle threads stop spinning
WARM_S = 0.1           # each turn's own warm-up
TARGETS = (("floor", 1.3), ("jax-jit", 0.9), ("torch", 0.65))  # a minivae step ≤ factor × that contender
EVALUATION_TARGET = 1.5
TOLERANCE = 0.03       # the fairness check's margin around the tight loops' spread


def thread_env(threads: int, **extra) -> dict:
    """This environment with every thread pool (OpenBLAS, OpenMP/PyTorch, Numba) set to ``threads``."""
    env = {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES}, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values) -> float:
    return float(statistics.median(values))


class WorkerFailed(RuntimeError):
    pass


class Worker:
    """A contender in its own process (see ``benchmarks.worker``); its stderr goes to a temporary file."""

    def __init__(self, contender: str, configs: list, env: dict):
        self.name, self.log = contender, tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen([sys.executable, "-m", "benchmarks.worker", contender, json.dumps(configs)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                        env=env, cwd=ROOT)

    def send(self, command: dict) -> None:
        try:
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the answer's absence reports it

    def receive(self):
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self.log.seek(0)
            lines = [s for s in self.log.read().splitlines() if s.strip()]
            raise WorkerFailed(f"its process ended (exit status {self.process.returncode})"
                               + (f": {lines[-1][:300]}" if lines else ""))
        answer = json.loads(line)
        if isinstance(answer, dict) and "error" in answer:
            self.close()
            raise WorkerFailed(answer["error"])
        return answer

    def run(self, config: int, warmup: int, steps: int):
        self.send({"config": config, "warmup": warmup, "steps": steps})
        return self.receive()

    def close(self) -> None:
        if self.process.poll() is None:
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


class Pool:
    """One worker per available contender of ``names``, for the configurations ``configs``.

    A contender whose modules are missing is not started; one whose process fails is dropped;
    both leave a line in ``notes``.
    """

    def __init__(self, names, configs: list, threads: int, notes: list, env: dict | None = None):
        present, left_out = contenders.available(names)
        notes += [note for note in left_out if note not in notes]
        self.configs, self.notes, self.built = configs, notes, {}
        self.workers = {name: Worker(name, configs, thread_env(threads, **CONTENDERS[name].env, **(env or {})))
                        for name in present}

    def drop(self, name: str, error: Exception) -> None:
        self.notes.append(f"{CONTENDERS[name].label}: left out, {error}")
        progress(f"{CONTENDERS[name].label}: left out, {error}")
        worker = self.workers.pop(name)
        worker.close()

    def build(self, config: int, warmup: int = WARMUP_STEPS) -> dict:
        """Build configuration ``config`` in every worker at once; the seconds each took (build, first step)."""
        if config in self.built:
            return self.built[config]
        for worker in self.workers.values():
            worker.send({"build": config, "warmup": warmup})
        built = {}
        for name in list(self.workers):
            try:
                built[name] = self.workers[name].receive()
                progress(f"  {CONTENDERS[name].label}: built and warmed up "
                         f"({built[name]['build_s'] + built[name]['first_step_s']:.1f} s to its first step)")
            except WorkerFailed as error:
                self.drop(name, error)
        self.built[config] = built
        return built

    def run(self, name: str, config: int, warmup: int, steps: int):
        try:
            return self.workers[name].run(config, warmup, steps)
        except WorkerFailed as error:
            self.drop(name, error)
            return None

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()
        self.workers = {}


def turn_sizes(step_s: float, turn_s: float) -> tuple[int, int]:
    """(warm-up steps, timed steps) of a turn: about WARM_S of warm-up (none for steps over 0.5 s,
    which amortize a wake-up alone) and about ``turn_s`` of timed steps, at least 5."""
    warmup = 0 if step_s > 0.5 else max(3, math.ceil(WARM_S / step_s))
    return warmup, max(5 if step_s < 0.5 else 1, math.ceil(turn_s / step_s))


def measure(pool: Pool, config: int, rounds: int, turn_s: float, tight_s: float | None, label: str) -> dict:
    """Every worker's per-step times on configuration ``config``: ``rounds`` turns each, alternated,
    and (unless ``tight_s`` is None) a tight loop of about ``tight_s`` each before and after the turns."""
    pool.build(config)
    sizes, step_s = {}, {}
    for name in list(pool.workers):  # the step's time, from one step if that is long, else five
        times = pool.run(name, config, 0, 1)
        if times is not None and times[0] < 0.1:
            times = pool.run(name, config, 0, 5)
        if times is not None:
            step_s[name] = median(times)
            sizes[name] = turn_sizes(step_s[name], turn_s)

    def tight_loops():
        medians = {}
        for name in list(pool.workers):
            time.sleep(PAUSE_S)
            warmup, _ = sizes[name]
            times = pool.run(name, config, warmup, max(10, math.ceil(tight_s / step_s[name])))
            if times is not None:
                medians[name] = median(times)
        return medians

    before = tight_loops() if tight_s else {}
    suite = {name: [] for name in pool.workers}
    for r in range(rounds):
        progress(f"{label}: round {r + 1} of {rounds}")
        names = list(pool.workers)
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(PAUSE_S)
            times = pool.run(name, config, *sizes[name])
            if times is not None:
                suite[name] += times
    after = tight_loops() if tight_s else {}
    rows = {}
    for name in pool.workers:
        row = {"label": CONTENDERS[name].label, "median_s": median(suite[name]), "steps": len(suite[name]),
               "turn": list(sizes[name]), "build": pool.built[config].get(name)}
        if name in before and name in after:
            tight = [before[name], after[name]]
            row["tight_loop_s"] = tight
            row["suite_over_tight"] = row["median_s"] / statistics.mean(tight)
            low, high = min(tight) * (1 - TOLERANCE), max(tight) * (1 + TOLERANCE)
            row["within_noise"] = low <= row["median_s"] <= high
        rows[name] = row
    return rows


# ------------------------------------------------------------------------ step and scaling
def step_configs() -> dict:
    """The step section's configurations: the default model, batch 32, and S = 10 samples per digit."""
    return {"batch 128": dict(DEFAULT), "batch 32": {**DEFAULT, "batch": 32}, "S = 10": {**DEFAULT, "samples": 10}}


def scaling_configs(quick: bool, hiddens=()) -> list[dict]:
    """Batch sizes at hidden 400, then hidden widths at batch 128 (each a compile for the compiling peers)."""
    batches = (32, 128, 512) if quick else (32, 64, 128, 256, 512, 1024)
    return [{**DEFAULT, "batch": b} for b in batches] + [{**DEFAULT, "hidden": h} for h in hiddens]


def ratios(rows: dict) -> dict:
    """Every minivae contender's time over the floor's and over every peer's."""
    out = {}
    for name, row in rows.items():
        if name.startswith("minivae"):
            out[name] = {other: row["median_s"] / rows[other]["median_s"]
                         for other in rows if not other.startswith("minivae")}
    return out


def targets(rows: dict) -> dict:
    """For every minivae contender: {"≤ f × label": (ratio, met)} for the targets whose peer ran."""
    out = {}
    for name, row in rows.items():
        if name.startswith("minivae"):
            out[name] = {f"≤ {factor} × {CONTENDERS[other].label}": (row["median_s"] / rows[other]["median_s"],
                                                                    row["median_s"] <= factor * rows[other]["median_s"])
                         for other, factor in TARGETS if other in rows}
    return out


def bench_steps(args, notes: list) -> dict:
    """The step and scaling sections on one pool of workers (one process per contender)."""
    step = step_configs() if "step" in args.only else {}
    scaling = scaling_configs(args.quick, args.hiddens) if "scaling" in args.only else []
    configs = list(step.values())
    for config in scaling:
        if config not in configs:
            configs.append(config)
    pool = Pool(args.contenders, configs, args.threads, notes)
    results = {}
    try:
        if step:
            results["step"] = {}
            for title, config in step.items():
                index = configs.index(config)
                progress(f"step, {title}: building {len(pool.workers)} contenders (compilers compile now)")
                rows = measure(pool, index, args.rounds, args.turn, args.tight, f"step, {title}")
                results["step"][title] = {"config": config, "contenders": rows, "ratios": ratios(rows),
                                          "targets": targets(rows),
                                          "floor_flops": contenders.floor_flops(**{k: config[k] for k in
                                                                                   ("batch", "hidden", "latent",
                                                                                    "input_dim", "samples")})}
        if scaling:
            results["scaling"] = []
            measured = {json.dumps(s["config"], sort_keys=True): s["contenders"]
                        for s in results.get("step", {}).values()}
            for config in scaling:
                index = configs.index(config)
                title = f"scaling, batch {config['batch']}, hidden {config['hidden']}"
                rows = measured.get(json.dumps(config, sort_keys=True))  # the step section's rows where it ran
                if rows is None:
                    progress(f"{title}: building")
                    rows = measure(pool, index, max(2, args.rounds // 2), args.turn, None, title)
                results["scaling"].append({"config": config, "contenders": rows})
    finally:
        pool.close()
    return results


def bench_phases(args, notes: list) -> dict:
    """The minivae step cut into forward, backward and optimizer, on both backends, alternated."""
    workers = {backend: Worker("phases", [DEFAULT], thread_env(args.threads, MINIVAE_KERNELS=backend))
               for backend in ("numba", "reference")}
    times = {backend: {} for backend in workers}
    try:
        for worker in workers.values():
            worker.send({"build": 0, "warmup": WARMUP_STEPS})
        for worker in workers.values():
            worker.receive()
        for _ in range(args.rounds):
            for backend, worker in workers.items():
                time.sleep(PAUSE_S)
                for phase, t in worker.run(0, 10, 40).items():
                    times[backend].setdefault(phase, []).extend(t)
    finally:
        for worker in workers.values():
            worker.close()
    return {backend: {phase: median(t) for phase, t in p.items()} for backend, p in times.items()}


# ------------------------------------------------------------------------ evaluation
def bench_evaluation(args, notes: list) -> dict:
    config = {"digits": args.eval_digits, "k": args.eval_k}
    pool = Pool(("minivae-evaluate", "evaluate-floor"), [config], args.threads, notes)
    try:
        progress(f"evaluation: k = {args.eval_k} on {args.eval_digits} held-out digits")
        pool.build(0, warmup=1)
        rows = measure(pool, 0, 3, 0.0, None, "evaluation")
    finally:
        pool.close()
    result = {"config": config, "contenders": rows}
    if {"minivae-evaluate", "evaluate-floor"} <= set(rows):
        result["ratio"] = rows["minivae-evaluate"]["median_s"] / rows["evaluate-floor"]["median_s"]
    return result


# ------------------------------------------------------------------------ train, memory, start-up, profile
def oneshot(args: list, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.oneshot", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT)
    if done.returncode:
        lines = [s for s in done.stderr.splitlines() if s.strip()]
        raise WorkerFailed(f"exit status {done.returncode}" + (f": {lines[-1][:300]}" if lines else ""))
    return json.loads(done.stdout.strip().splitlines()[-1])


TRAIN_RUNS = {"minivae": ("minivae train", "minivae"), "torch": ("pytorch eager loop", "torch"),
              "jax": ("jax.jit loop", "jax-jit")}


def bench_train(args, notes: list) -> dict:
    """Whole training runs of one epoch on the embedded MNIST digits, alternated, ``rounds`` each."""
    runs = {}
    for name, (_, contender) in TRAIN_RUNS.items():
        why = contenders.missing(contender)
        if why is None:
            runs[name] = []
        elif why not in notes:
            notes.append(why)
    rounds = 1 if args.quick else 3
    for r in range(rounds):
        for name in list(runs):
            progress(f"train: {TRAIN_RUNS[name][0]}, run {r + 1} of {rounds}")
            try:
                runs[name].append(oneshot(["train", name, "1"], thread_env(args.threads)))
            except WorkerFailed as error:
                notes.append(f"train section, {TRAIN_RUNS[name][0]}: left out, {error}")
                runs.pop(name)
    out = {}
    for name, results in runs.items():
        per_run = [median(r["step_times_s"]) for r in results]
        out[name] = {"label": TRAIN_RUNS[name][0], "median_s": median(per_run), "run_medians_s": per_run,
                     "steps": sum(len(r["step_times_s"]) for r in results), "digits": results[0]["digits"]}
    return out


def bench_profile(args, notes: list) -> dict:
    return {backend: oneshot(["profile", str(20 * args.rounds)], thread_env(args.threads, MINIVAE_KERNELS=backend))
            for backend in ("numba", "reference")}


def bench_memory(args, notes: list) -> dict:
    examples = 10_000 if args.quick else 60_000
    runs = {"minivae (numba)": ("minivae", thread_env(args.threads)),
            "minivae (reference compositions)": ("minivae", thread_env(args.threads, MINIVAE_KERNELS="reference"))}
    if not contenders.missing("torch"):
        runs["pytorch eager"] = ("torch", thread_env(args.threads))
    return {"examples": examples,
            "runs": {name: oneshot(["epoch", contender, str(examples)], env)
                     for name, (contender, env) in runs.items()}}


def bench_startup(args, notes: list) -> dict:
    def from_start(env):
        started = time.time()
        result = oneshot(["first-step"], env)
        return {**result, "start_to_first_step_s": result["finished_at"] - started}

    runs = {"cold": [], "warm": []}
    for _ in range(1 if args.quick else 3):
        with tempfile.TemporaryDirectory() as cache:
            env = thread_env(args.threads, NUMBA_CACHE_DIR=cache)
            runs["cold"].append(from_start(env))
            runs["warm"].append(from_start(env))
    keys = ("import_s", "first_step_s", "start_to_first_step_s")
    summary = {kind: {key: median([r[key] for r in rs]) for key in keys}
               for kind, rs in runs.items()}
    summary["compile_s"] = summary["cold"]["first_step_s"] - summary["warm"]["first_step_s"]
    return summary


# ------------------------------------------------------------------------ report
def versions() -> dict:
    out = {"python": platform.python_version()}
    for package in ("numpy", "numba", "torch", "jax", "jaxlib", "autograd"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="minutes"), "versions": versions()}


def table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


def load_line(results: dict) -> str:
    def load(key):
        return "/".join(f"{v:.2f}" for v in results[key]) if key in results else "?"
    return (f"load average (1/5/15 min) {load('load_average_at_start')} at the start, "
            f"{load('load_average_at_end')} at the end")


def report_step(title: str, s: dict) -> list:
    rows, config = s["contenders"], s["config"]
    floor = rows["floor"]["median_s"] if "floor" in rows else float("nan")
    out = ["", f"### Training step ({title}: {config['input_dim']}-{config['hidden']}-{config['latent']}, "
               f"batch {config['batch']}, S = {config['samples']}, float32)", "",
           f"The floor: the step's {contenders.floor_product_count(config['samples'])} matrix products alone, "
           f"{s['floor_flops'] / 1e6:.1f} MFLOP ({s['floor_flops'] / floor / 1e9:.1f} GFLOP/s).", "",
           "Suite: median over the turns; tight loop: the median of one uninterrupted run before and one after "
           "the turns; \"within noise\": the suite's median lies within the two tight loops' range, "
           f"widened by {TOLERANCE:.0%}.", "",
           table(["contender", "suite ms/step", "× floor", "tight loop ms (before, after)", "suite / tight loop",
                  "within noise", "steps (turn: warm-up + timed)", "build + first step s"],
                 [[r["label"], ms(r["median_s"]), f"{r['median_s'] / floor:.2f}",
                   ", ".join(ms(t) for t in r.get("tight_loop_s", [])),
                   f"{r['suite_over_tight']:.3f}" if "suite_over_tight" in r else "",
                   ("yes" if r["within_noise"] else "no") if "within_noise" in r else "",
                   f"{r['steps']} ({r['turn'][0]} + {r['turn'][1]})",
                   f"{r['build']['build_s'] + r['build']['first_step_s']:.1f}" if r.get("build") else ""]
                  for r in rows.values()])]
    peers = [name for name in rows if not name.startswith("minivae")]
    if s["ratios"]:
        out += ["", table(["ratio"] + [f"/ {CONTENDERS[p].label}" for p in peers],
                          [[CONTENDERS[m].label] + [f"{r[p]:.2f}" for p in peers] for m, r in s["ratios"].items()])]
    if any(s["targets"].values()):
        first = next(iter(s["targets"].values()))
        out += ["", table(["target"] + list(first),
                          [[CONTENDERS[m].label] + [f"{ratio:.2f} {'met' if met else 'not met'}"
                                                    for ratio, met in t.values()] for m, t in s["targets"].items()])]
    return out


LINEAR_GROUP = "linear layers (products inside)"
PART_GROUPS = ((LINEAR_GROUP, ("forward linear", "backward linear", "forward relu (fused",
                               "forward matmul", "backward matmul", "forward transpose", "backward transpose")),
               ("adam", ("adam",)),
               ("bernoulli log-likelihood (fused)", ("forward bernoulli_log_prob", "backward bernoulli_log_prob")),
               ("everything else", ("everything else",)))


def grouped_parts(parts: dict) -> dict:
    """The profile's parts in a few groups, in seconds; the other ops in "other ops".

    The linear layers are the fused ``linear`` and ``linear_relu`` ops (and the ReLU that joins
    one), or on the reference backend their products (``matmul``) and transposes; the reference's
    bias additions, ReLUs and cross-entropy terms are generic ops, so they count in "other ops"."""
    groups = {name: 0.0 for name, _ in PART_GROUPS}
    groups["other ops"] = 0.0
    for label, seconds in parts.items():
        for name, prefixes in PART_GROUPS:
            if label.startswith(prefixes):
                groups[name] += seconds
                break
        else:
            groups["other ops"] += seconds
    order = [name for name, _ in PART_GROUPS[:-1]] + ["other ops", "everything else"]
    return {name: groups[name] for name in order}


def report(results: dict) -> str:
    m = results["machine"]
    out = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['date']}; threads {results['threads']}; "
           + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + f"; {load_line(results)}"
           + ("; quick run" if results["quick"] else "")]
    if results.get("notes"):
        out += ["", "Left out:", ""] + [f"- {note}" for note in results["notes"]]
    for title, s in results.get("step", {}).items():
        out += report_step(title, s)
    if "phases" in results:
        p = results["phases"]
        out += ["", "### The minivae step's phases (batch 128)", "",
                table(["phase", "numba ms", "reference (compositions) ms"],
                      [[phase, ms(t), ms(p["reference"][phase])] for phase, t in p["numba"].items()])]
    if "profile" in results:
        p = results["profile"]
        parts = {backend: p[backend]["parts_s"] for backend in ("numba", "reference")}
        rest = "everything else (graph walk, gradient sums, Python)"
        labels = sorted((set(parts["numba"]) | set(parts["reference"])) - {rest},
                        key=lambda label: -max(parts["numba"].get(label, 0), parts["reference"].get(label, 0)))
        out += ["", "### Where a minivae step's time goes (µs per step; matrix products are inside the linear ops "
                    "on numba, the matmul ops on the reference; an op called inside another's backward counts "
                    "in that backward)", "",
                table(["part", "numba", "reference (compositions)"],
                      [[label] + [us(parts[b][label]) if label in parts[b] else "" for b in parts]
                       for label in labels + [rest]]
                      + [["whole step", us(p["numba"]["step_s"]), us(p["reference"]["step_s"])]])]
    if "kernels" in results:
        out += ["", "### Fused functions against their compositions (float32, the arrays of a default step; "
                    "Adam's kernel against its NumPy reference)", "",
                table(["case", "numba µs", "reference µs", "speed-up"],
                      [[r["case"], us(r["numba_s"]), us(r["reference_s"]), f"{r['speedup']:.1f}×"]
                       for r in results["kernels"]])]
    if results.get("scaling"):
        names = list(dict.fromkeys(name for row in results["scaling"] for name in row["contenders"]))
        out += ["", "### Scaling (ms per step; µs per example in parentheses; medians over the turns)", "",
                table(["batch", "hidden"] + [CONTENDERS[n].label for n in names]
                      + [f"{CONTENDERS[n].label} / floor" for n in names if n.startswith("minivae")],
                      [[row["config"]["batch"], row["config"]["hidden"]]
                       + [f"{ms(row['contenders'][n]['median_s'])} "
                          f"({us(row['contenders'][n]['median_s'] / row['config']['batch'])})"
                          if n in row["contenders"] else "" for n in names]
                       + [f"{row['contenders'][n]['median_s'] / row['contenders']['floor']['median_s']:.2f}"
                          if n in row["contenders"] and "floor" in row["contenders"] else ""
                          for n in names if n.startswith("minivae")]
                       for row in results["scaling"]])]
    if "evaluation" in results:
        e = results["evaluation"]
        digits = e["config"]["digits"]
        out += ["", f"### Evaluation: importance-weighted log-likelihood, k = {e['config']['k']}, "
                    f"{digits} held-out digits (as `minivae evaluate` calls it)", "",
                table(["contender", "s per evaluation", "ms per digit", "s for 1,000 digits at that rate", "runs"],
                      [[r["label"], f"{r['median_s']:.3f}", ms(r["median_s"] / digits),
                        f"{r['median_s'] / digits * 1000:.1f}", r["steps"]] for r in e["contenders"].values()])]
        if "ratio" in e:
            out += ["", f"minivae evaluate / its floor: {e['ratio']:.2f} (target ≤ {EVALUATION_TARGET}: "
                        f"{'met' if e['ratio'] <= EVALUATION_TARGET else 'not met'})"]
    if results.get("train"):
        t = results["train"]
        base = t.get("minivae", {}).get("median_s")
        out += ["", f"### What users run: per-step time of one training epoch ({next(iter(t.values()))['digits']:,} "
                    "digits, batch 128, the same batch order; whole runs alternated)", "",
                table(["run", "median ms/step", "median of each run ms", "steps", "minivae train / this"],
                      [[r["label"], ms(r["median_s"]), ", ".join(ms(v) for v in r["run_medians_s"]), r["steps"],
                        f"{base / r['median_s']:.2f}" if base else ""] for r in t.values()])]
    if "memory" in results:
        mem = results["memory"]
        out += ["", f"### Memory: one epoch of {mem['examples']:,} examples, batch 128", "",
                table(["contender", "after imports MiB", "+ data and model MiB", "+ first step MiB", "peak MiB",
                       "peak − first step MiB", "epoch s"],
                      [[name, f"{r['rss_after_imports_mib']:.0f}", f"{r['rss_with_data_and_model_mib']:.0f}",
                        f"{r['rss_after_first_step_mib']:.0f}", f"{r['peak_rss_mib']:.0f}",
                        f"{r['peak_rss_mib'] - r['rss_after_first_step_mib']:.0f}", f"{r['seconds']:.2f}"]
                       for name, r in mem["runs"].items()])]
    if "startup" in results:
        s = results["startup"]
        out += ["", "### Start-up (medians; a process's start to its first finished step)", "",
                table(["kernel cache", "import s", "first step s", "start → first step s"],
                      [[kind, f"{s[kind]['import_s']:.2f}", f"{s[kind]['first_step_s']:.2f}",
                        f"{s[kind]['start_to_first_step_s']:.2f}"] for kind in ("cold", "warm")]),
                "", f"Compilation (cold − warm first step): {s['compile_s']:.2f} s"]
    return "\n".join(out)


# ------------------------------------------------------------------------ charts
def write_charts(results: dict, stem: Path) -> list[Path]:
    """The PNG charts beside the JSON: ms per step against batch size, and a step's parts."""
    from benchmarks import charts
    written = []
    rows = [row for row in results.get("scaling", []) if row["config"]["hidden"] == DEFAULT["hidden"]
            and row["config"]["samples"] == 1]
    if len(rows) >= 2:
        names = list(dict.fromkeys(name for row in rows for name in row["contenders"]))
        series = {CONTENDERS[n].label: ([row["config"]["batch"] for row in rows if n in row["contenders"]],
                                        [row["contenders"][n]["median_s"] * 1e3 for row in rows
                                         if n in row["contenders"]]) for n in names}
        title = (f"ms per step against batch size: 784-400-20, float32, {results['threads']} threads, "
                 f"{results['machine']['date'][:10]}")
        written.append(charts.write(f"{stem}-scaling.png", charts.scaling_chart(series, title)))
    if "profile" in results:
        bars = {f"minivae ({backend})": {k: v * 1e3 for k, v in grouped_parts(p["parts_s"]).items()}
                for backend, p in results["profile"].items()}
        floor = results.get("step", {}).get("batch 128", {}).get("contenders", {}).get("floor")
        if floor:
            bars["floor (matrix products)"] = {LINEAR_GROUP: floor["median_s"] * 1e3}
        written.append(charts.write(f"{stem}-parts.png", charts.parts_chart(
            bars, "where a training step's time goes, batch 128, ms (profiled: timers add to the small ops)")))
    return written


# ------------------------------------------------------------------------ main
SECTIONS = ("step", "profile", "kernels", "scaling", "evaluation", "train", "memory", "startup")
# What a quick run leaves out unless asked for by name (--only, --contenders): the longest builds.
QUICK_SKIPS_SECTIONS = {"evaluation": "minivae's side is slow at k = 5000"}
QUICK_SKIPS_CONTENDERS = {"torch-compile": "it compiles for tens of seconds per configuration"}


def choose_sections(args) -> list[str]:
    """Fill in ``args.only`` and ``args.contenders`` where the command line left them out: everything, or
    in a quick run everything but QUICK_SKIPS_*; a note for each part a quick run leaves out."""
    notes = []
    if args.only is None:
        args.only = [s for s in SECTIONS if not (args.quick and s in QUICK_SKIPS_SECTIONS)]
        if args.quick:
            notes += [f"{s} section: not run in a quick run ({why}); --only {s} runs it"
                      for s, why in QUICK_SKIPS_SECTIONS.items()]
    if args.contenders is None:
        args.contenders = [c for c in STEP_CONTENDERS if not (args.quick and c in QUICK_SKIPS_CONTENDERS)]
        if args.quick and ({"step", "scaling"} & set(args.only)):
            notes += [f"{CONTENDERS[c].label}: left out of a quick run ({why}); name it in --contenders to run it"
                      for c, why in QUICK_SKIPS_CONTENDERS.items()]
    return notes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0],
                                     epilog="Peers whose packages are missing are left out with a note; "
                                            f"{contenders.WITHOUT_VARIABLE}=torch,jax leaves installed ones out too.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds, configurations and digits; leaves out torch.compile and the evaluation "
                             "section unless --contenders or --only names them")
    parser.add_argument("--rounds", type=int, help="turns per contender and configuration (default 10; quick 4)")
    parser.add_argument("--threads", type=int, default=2, help="threads of every pool (default 2)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="sections to run (default: all; quick: all but "
                                                                    "evaluation)")
    parser.add_argument("--contenders", nargs="+", choices=STEP_CONTENDERS,
                        help="the step and scaling sections' contenders (default: all; quick: all but torch-compile)")
    parser.add_argument("--hiddens", nargs="+", type=int, default=[], metavar="WIDTH",
                        help="hidden widths for the scaling section at batch 128, e.g. 100 200 800 1600 (default none)")
    parser.add_argument("--eval-digits", type=int, help="held-out digits of the evaluation (default 64; quick 16)")
    parser.add_argument("--eval-k", type=int, default=5000, help="importance samples per digit (default 5000)")
    parser.add_argument("--json", type=Path,
                        help="where to write the results (default benchmarks/results/<time>.json); "
                             "the charts go beside it")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (4 if args.quick else 10)
    args.turn, args.tight = (0.2, 0.6) if args.quick else (0.3, 1.5)
    args.eval_digits = args.eval_digits or (16 if args.quick else 64)
    for name, value in (*(("--hiddens", h) for h in args.hiddens), ("--rounds", args.rounds),
                        ("--threads", args.threads), ("--eval-digits", args.eval_digits), ("--eval-k", args.eval_k)):
        if value < 1:
            parser.error(f"{name} must be a positive integer, got {value}")

    notes = choose_sections(args)

    os.environ.update({name: str(args.threads) for name in THREAD_VARIABLES})  # before NumPy loads
    results = {"threads": args.threads, "quick": args.quick, "machine": machine(),
               "load_average_at_start": os.getloadavg(), "notes": notes}
    progress(f"{results['machine']['cpu']}, {results['machine']['cores']} cores; {load_line(results)}")
    if "step" in args.only or "scaling" in args.only:
        results.update(bench_steps(args, notes))
    if "step" in args.only:
        progress("phases")
        results["phases"] = bench_phases(args, notes)
    if "profile" in args.only:
        progress("profile")
        results["profile"] = bench_profile(args, notes)
    if "kernels" in args.only:
        progress("kernels")
        from .micro import time_kernels
        results["kernels"] = time_kernels(calls=100 if args.quick else 1000)
    if "evaluation" in args.only:
        results["evaluation"] = bench_evaluation(args, notes)
    if "train" in args.only:
        results["train"] = bench_train(args, notes)
    if "memory" in args.only:
        progress("memory")
        results["memory"] = bench_memory(args, notes)
    if "startup" in args.only:
        progress("start-up")
        results["startup"] = bench_startup(args, notes)

    results["load_average_at_end"] = os.getloadavg()
    path = args.json or RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    charts = write_charts(results, path.with_suffix(""))
    print(report(results))
    print(f"\nResults: {path}" + "".join(f"\nChart: {chart}" for chart in charts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
