"""The markdown tables of a run (what ``python -m benchmarks.run`` prints) and its PNG charts."""
from __future__ import annotations

from pathlib import Path

from benchmarks.config import Config
from benchmarks.contenders import CONTENDERS, floor_flops, floor_product_count
from benchmarks.measure import TOLERANCE, Timing
from benchmarks.sections import Measured, scaling_cases, step_cases

FLOOR = CONTENDERS["floor"].label
MINIVAE = tuple(c.label for name, c in CONTENDERS.items() if name.startswith("minivae"))
REST = "everything else (graph walk, gradient sums, Python)"


def table(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


def step_rows(timings: list[Timing]) -> list[list]:
    floor = next((t.median for t in timings if t.label == FLOOR), float("nan"))
    return [[t.label, ms(t.median), "–".join(ms(q) for q in t.spread), f"{t.median / floor:.2f}",
             ", ".join(ms(s) for s in t.tight), {None: "", True: "yes", False: "no"}[t.within_noise],
             f"{len(t.all_values)} ({len(t.values)} turns)",
             "" if t.first_step_s is None else f"{t.first_step_s:.1f}"] for t in timings]


def step_tables(case: str, timings: list[Timing]) -> list[str]:
    """The contenders of one step configuration with the fairness check, and every minivae contender's ratios."""
    config = timings[0].config
    floor = next((t.median for t in timings if t.label == FLOOR), None)
    out = ["", f"### Training step ({config}, float32)", ""]
    if floor:
        out += [f"The floor: the step's {floor_product_count(config)} matrix products alone, "
                f"{floor_flops(config) / 1e6:.1f} MFLOP ({floor_flops(config) / floor / 1e9:.1f} GFLOP/s).", ""]
    out += [table(["contender", "ms/step (median)", "quartiles ms", "× floor", "tight loops ms (before, after)",
                   "within noise", "steps", "build + first step s"], step_rows(timings))]
    ours, peers = [t for t in timings if t.label in MINIVAE], [t for t in timings if t.label not in MINIVAE]
    if ours and peers:
        out += ["", table(["ratio"] + [f"/ {p.label}" for p in peers],
                          [[t.label] + [f"{t.median / p.median:.2f}" for p in peers] for t in ours])]
    return out


def scaling_table(measured: Measured, cases: dict[str, Config]) -> list[str]:
    by_config = {}
    for t in measured.find("step") + measured.find("scaling"):
        by_config.setdefault(t.config, {})[t.label] = t.median
    rows = [(config, by_config[config]) for config in cases.values() if config in by_config]
    if not rows:
        return []
    labels = list(dict.fromkeys(label for _, medians in rows for label in medians))
    ours = [label for label in labels if label in MINIVAE]
    return ["", "### Scaling (ms per step; µs per example in parentheses; medians over the turns)", "",
            table(["batch", "hidden", *labels, *(f"{label} / floor" for label in ours)],
                  [[c.batch, c.hidden, *(f"{ms(m[label])} ({us(m[label] / c.batch)})" if label in m else ""
                                         for label in labels),
                    *(f"{m[label] / m[FLOOR]:.2f}" if label in m and FLOOR in m else "" for label in ours)]
                   for c, m in rows])]


def evaluation_table(timings: list[Timing]) -> list[str]:
    digits = timings[0].config.batch
    out = ["", f"### Evaluation: importance-weighted log-likelihood, k = {timings[0].config.samples}, {digits} "
               "held-out digits (as `minivae evaluate` calls it)", "",
           table(["contender", "s per evaluation", "ms per digit", "s for 1,000 digits at that rate", "runs"],
                 [[t.label, f"{t.median:.3f}", ms(t.median / digits), f"{t.median / digits * 1000:.1f}",
                   len(t.all_values)] for t in timings])]
    if len(timings) == 2:
        out += ["", f"{timings[0].label} / {timings[1].label}: {timings[0].median / timings[1].median:.2f}"]
    return out


def profile_table(profile: dict[str, dict[str, float]]) -> list[str]:
    parts = {backend: p["parts_s"] for backend, p in profile.items()}
    labels = sorted({label for p in parts.values() for label in p} - {REST},
                    key=lambda label: -max(p.get(label, 0) for p in parts.values()))
    return ["", "### Where a minivae step's time goes (µs per step; matrix products are inside the linear ops on "
                "numba, the matmul ops on the reference; an op called inside another's backward counts in that "
                "backward)", "",
            table(["part", *parts], [[label, *(us(p[label]) if label in p else "" for p in parts.values())]
                                     for label in [*labels, REST]]
                  + [["whole step", *(us(p["step_s"]) for p in profile.values())]])]


def kernels_table(timings: list[Timing]) -> list[str]:
    pairs = {}
    for t in timings:
        pairs.setdefault(t.case, {})[t.label] = t.median
    return ["", "### Fused functions against their compositions (float32, the arrays of a default step; "
                "Adam's kernel against its NumPy reference)", "",
            table(["case", "numba µs", "reference µs", "speed-up"],
                  [[case, us(p["numba"]), us(p["reference"]), f"{p['reference'] / p['numba']:.1f}×"]
                   for case, p in pairs.items()])]


def train_table(steps: list[Timing], epochs: list[Timing]) -> list[str]:
    """Per case: every run's step times, the last epoch's seconds per step as ``minivae train`` reports them,
    the start to the first step, and ``minivae train`` over each (the goal: 1.00 over the captured step loop)."""
    out = []
    for case in dict.fromkeys(t.case for t in steps):
        rows = [t for t in steps if t.case == case]
        reported = {t.label: t.median for t in epochs if t.case == case}
        base = next((t for t in rows if t.label == "minivae train"), None)
        out += ["", f"### What users run: per-step time of {case}, the same batch order; whole runs alternated", "",
                table(["run", "median ms/step", "quartiles ms", "median of each run ms", "steps",
                       "last epoch ms/step (as train reports)", "start to first step s",
                       "minivae train / this (median)", "minivae train / this (last epoch)"],
                      [[t.label, ms(t.median), "–".join(ms(q) for q in t.spread),
                        ", ".join(ms(Timing("", "", "", [v]).median) for v in t.values), len(t.all_values),
                        ms(reported[t.label]) if t.label in reported else "",
                        "" if t.first_step_s is None else f"{t.first_step_s:.2f}",
                        f"{base.median / t.median:.2f}" if base else "",
                        f"{reported[base.label] / reported[t.label]:.2f}"
                        if base and base.label in reported and t.label in reported else ""] for t in rows])]
    return out


def memory_table(memory: dict[str, dict[str, float]], examples: int) -> list[str]:
    stages = ("rss_after_imports_mib", "rss_with_data_and_model_mib", "rss_after_first_step_mib", "peak_rss_mib")
    return ["", f"### Memory: one epoch of {examples:,} examples, batch 128", "",
            table(["contender", "after imports MiB", "+ data and model MiB", "+ first step MiB", "peak MiB",
                   "peak − first step MiB", "epoch s"],
                  [[label, *(f"{r[s]:.0f}" for s in stages), f"{r['peak_rss_mib'] - r['rss_after_first_step_mib']:.0f}",
                    f"{r['seconds']:.2f}"] for label, r in memory.items()])]


def startup_table(timings: list[Timing]) -> list[str]:
    medians = {(t.case, t.label): t.median for t in timings}
    kinds, parts = list(dict.fromkeys(t.case for t in timings)), list(dict.fromkeys(t.label for t in timings))
    compile_s = medians["cold kernel cache", "first step"] - medians["warm kernel cache", "first step"]
    return ["", "### Start-up (medians; a process's start to its first finished step)", "",
            table(["kernel cache", *(f"{part} s" for part in parts)],
                  [[kind, *(f"{medians[kind, part]:.2f}" for part in parts)] for kind in kinds]),
            "", f"Compilation (cold − warm first step): {compile_s:.2f} s"]


def report(header: str, measured: Measured, options) -> str:
    """The run as markdown: the machine line, what was left out, then every section that ran."""
    out = [header] + (["", "Left out:", ""] + [f"- {note}" for note in measured.notes] if measured.notes else [])
    out += ["", f"Quartiles: of every timed step. Tight loops: one uninterrupted run before and one after the "
                f"turns; \"within noise\": the median lies within their range, widened by {TOLERANCE:.0%}."]
    for case in step_cases(options.model):
        if measured.find("step", case):
            out += step_tables(case, measured.find("step", case))
    if "scaling" in options.sections:
        out += scaling_table(measured, scaling_cases(options))
    if measured.find("evaluation"):
        out += evaluation_table(measured.find("evaluation"))
    if measured.profile:
        out += profile_table(measured.profile)
    if measured.find("kernels"):
        out += kernels_table(measured.find("kernels"))
    if measured.find("train"):
        out += train_table(measured.find("train"), measured.find("train epochs"))
    if measured.memory:
        out += memory_table(measured.memory, options.memory_examples)
    if measured.find("startup"):
        out += startup_table(measured.find("startup"))
    return "\n".join(out)


LINEAR_GROUP = "linear layers (products inside)"
PART_GROUPS = ((LINEAR_GROUP, ("forward linear", "backward linear", "forward relu (fused",
                               "forward matmul", "backward matmul", "forward transpose", "backward transpose")),
               ("adam", ("adam",)),
               ("bernoulli log-likelihood (fused)", ("forward bernoulli_log_prob", "backward bernoulli_log_prob")),
               ("other ops", ("",)))


def grouped_parts(parts: dict) -> dict:
    """The profile's parts in a few groups, in seconds: the linear layers (the fused ``linear`` and
    ``linear_relu`` ops and the ReLU that joins one, or on the reference backend their products and
    transposes), Adam, the fused cross-entropy, the other ops, and everything else."""
    groups = {name: 0.0 for name, _ in PART_GROUPS}
    for label, seconds in parts.items():
        if label != REST:
            groups[next(name for name, prefixes in PART_GROUPS if label.startswith(prefixes))] += seconds
    return {**groups, "everything else": parts.get(REST, 0.0)}


def write_charts(measured: Measured, options, stem: Path, date: str) -> list[Path]:
    """The PNG charts beside the JSON: ms per step against batch size, and a step's parts."""
    from benchmarks import charts
    written, series = [], {}
    for t in measured.find("step") + measured.find("scaling"):
        if t.config.hidden == options.model.hidden and t.config.samples == options.model.samples:
            series.setdefault(t.label, {})[t.config.batch] = t.median * 1e3
    if any(len(points) >= 2 for points in series.values()):
        m = options.model
        title = f"ms per step against batch size: {m.input_dim}-{m.hidden}-{m.latent}, S = {m.samples}, float32, " \
                f"{m.threads} threads, {date}"
        written.append(charts.write(f"{stem}-scaling.png", charts.scaling_chart(
            {label: (sorted(points), [points[b] for b in sorted(points)]) for label, points in series.items()},
            title)))
    if measured.profile:
        bars = {f"minivae ({backend})": {k: v * 1e3 for k, v in grouped_parts(p["parts_s"]).items()}
                for backend, p in measured.profile.items()}
        floor = [t for t in measured.find("step", f"batch {options.model.batch}") if t.label == FLOOR]
        if floor:
            bars[FLOOR] = {LINEAR_GROUP: floor[0].median * 1e3}
        written.append(charts.write(f"{stem}-parts.png", charts.parts_chart(
            bars, "where a training step's time goes, ms (profiled: timers add to the small ops)")))
    return written
