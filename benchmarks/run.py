"""Benchmark minivae's training step against its floor and every peer: ``python -m benchmarks.run [--quick]``.

Every contender runs in its own process and the processes take turns (``benchmarks.measure``); the
run prints markdown tables with the load average at its start and end, and writes every timing as
pyperf JSON (``benchmarks/results/<time>.json``), with PNG charts beside it. Two runs compare with
``python -m pyperf compare_to OLD.json NEW.json --table``; one is summarised by ``python -m pyperf stats``.
A quick run (``--quick``) takes fewer rounds, batch sizes and digits, and leaves out the two longest
builds, ``torch.compile`` and the evaluation section, unless ``--contenders`` or ``--only`` names them.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

from benchmarks import sections
from benchmarks.config import SECTIONS, Config, Options
from benchmarks.contenders import CONTENDERS, STEP_CONTENDERS, WITHOUT_VARIABLE
from benchmarks.report import report, write_charts
from benchmarks.worker import progress

RESULTS = Path(__file__).resolve().parent / "results"
# What a quick run leaves out unless named (--only, --contenders): the longest builds.
QUICK_SKIPS_SECTIONS = {"evaluation": "minivae's side is slow at k = 5000"}
QUICK_SKIPS_CONTENDERS = {"torch-compile": "it compiles for tens of seconds per configuration"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0],
                                epilog="Peers whose packages are missing are left out with a note; "
                                       f"{WITHOUT_VARIABLE}=torch,jax leaves installed ones out too. Compare two "
                                       "runs: python -m pyperf compare_to OLD.json NEW.json --table")
    p.add_argument("--quick", action="store_true", help="fewer rounds, configurations and digits; leaves out "
                   "torch.compile and the evaluation section unless --contenders or --only names them")
    p.add_argument("--rounds", type=int, help="turns per contender and configuration (default 10; quick 4)")
    p.add_argument("--threads", type=int, default=2, help="threads of every pool (default 2)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                   help=f"sections to run, of {', '.join(SECTIONS)} (default: all; quick: all but evaluation)")
    p.add_argument("--contenders", nargs="+", choices=STEP_CONTENDERS, metavar="CONTENDER",
                   help=f"the step and scaling sections' contenders, of {', '.join(STEP_CONTENDERS)} "
                        "(default: all; quick: all but torch-compile)")
    p.add_argument("--hiddens", nargs="+", type=int, default=[], metavar="WIDTH",
                   help="hidden widths for the scaling section at batch 128, e.g. 100 200 800 1600 (default none)")
    p.add_argument("--eval-digits", type=int, help="held-out digits of the evaluation (default 64; quick 16)")
    p.add_argument("--eval-k", type=int, default=5000, help="importance samples per digit (default 5000)")
    p.add_argument("--json", type=Path, help="where to write the results (default benchmarks/results/<time>.json); "
                                             "the charts go beside it")
    return p


def options(argv=None) -> tuple[Options, list[str]]:
    """The command line as ``Options``, and a note for each part a quick run leaves out."""
    p = parser()
    args = p.parse_args(argv)
    for name, value in (*(("--hiddens", h) for h in args.hiddens), ("--rounds", args.rounds),
                        ("--threads", args.threads), ("--eval-digits", args.eval_digits), ("--eval-k", args.eval_k)):
        if value is not None and value < 1:
            p.error(f"{name} must be a positive integer, got {value}")
    notes = []
    if args.only is None:
        args.only = [s for s in SECTIONS if not (args.quick and s in QUICK_SKIPS_SECTIONS)]
        if args.quick:
            notes += [f"{s} section: not run in a quick run ({why}); --only {s} runs it"
                      for s, why in QUICK_SKIPS_SECTIONS.items()]
    if args.contenders is None:
        args.contenders = [c for c in STEP_CONTENDERS if not (args.quick and c in QUICK_SKIPS_CONTENDERS)]
        if args.quick and {"step", "scaling"} & set(args.only):
            notes += [f"{CONTENDERS[c].label}: left out of a quick run ({why}); name it in --contenders to run it"
                      for c, why in QUICK_SKIPS_CONTENDERS.items()]
    given = {"sections": args.only, "contenders": args.contenders, "model": Config(threads=args.threads),
             "hiddens": args.hiddens, "eval_k": args.eval_k, "json": args.json,
             **{name: value for name, value in (("rounds", args.rounds), ("eval_digits", args.eval_digits))
                if value is not None}}
    return (Options.quick_run(**given) if args.quick else Options(**given)), notes


def versions() -> dict:
    found = {"python": platform.python_version()}
    for package in ("numpy", "numba", "torch", "jax", "jaxlib", "autograd", "pyperf"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def header(options: Options, date: str, loads: list[tuple]) -> str:
    load = " at the start, ".join("/".join(f"{v:.2f}" for v in load) for load in loads)
    return (f"Machine: {cpu()}, {os.cpu_count()} cores, {date}; threads {options.model.threads}; "
            + ", ".join(f"{k} {v}" for k, v in versions().items())
            + f"; load average (1/5/15 min) {load}{' at the end' if len(loads) > 1 else ''}"
            + ("; quick run" if options.quick else ""))


def suite(measured: sections.Measured, metadata: dict):
    """Every timing as a pyperf benchmark; the profile's parts and the memory figures too, one value each."""
    import pyperf
    benchmarks = [b for t in measured.timings for b in t.benchmarks()]
    singles = [(f"profile / {backend} / {part}", seconds, "second") for backend, p in measured.profile.items()
               for part, seconds in p["parts_s"].items()]
    singles += [(f"memory / {label} / {stage}", value * 2 ** 20, "byte") for label, r in measured.memory.items()
                for stage, value in r.items() if stage.endswith("_mib")]
    benchmarks += [pyperf.Benchmark([pyperf.Run([value], metadata={"name": name, "unit": unit},
                                                collect_metadata=False)]) for name, value, unit in singles if value > 0]
    for benchmark in benchmarks:
        benchmark.update_metadata(metadata)
    return pyperf.BenchmarkSuite(benchmarks)


def run(options: Options, notes: list[str] = ()) -> tuple[sections.Measured, str, Path]:
    """Every section of ``options``; the measurements, the report and where the JSON went."""
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes")
    loads = [os.getloadavg()]
    progress(header(options, date, loads))
    measured = sections.Measured(notes=list(notes))
    for function in dict.fromkeys(sections.SECTIONS[s] for s in options.sections):
        progress(function.__name__)
        measured.add(function(options))
    loads.append(os.getloadavg())
    text = header(options, date, loads)
    path = options.json or RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"date": date, "cpu_model_name": cpu(), "cpu_count": os.cpu_count(), "description": text[9:]}
    suite(measured, metadata).dump(str(path), replace=True)
    charts = write_charts(measured, options, path.with_suffix(""), date[:10])
    text = report(text, measured, options)
    return measured, text + f"\n\nResults: {path}" + "".join(f"\nChart: {chart}" for chart in charts), path


def main(argv=None) -> int:
    chosen, notes = options(argv)
    if importlib.util.find_spec("pyperf") is None:
        sys.exit('python -m benchmarks.run: pyperf is not installed (it holds the results): pip install -e ".[bench]"')
    print(run(chosen, notes)[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
