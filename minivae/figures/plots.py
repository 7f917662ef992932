"""Plots with axes and text, drawn with matplotlib (the optional ``plot`` extra).

One scaffold, ``line_plot``, draws every line plot: the run's loss curve, the estimators' variance
(``minivae.study.variance.variance_plot``) and the benchmark's scaling chart. matplotlib is
imported only when a plot is drawn, on its Agg canvas and without pyplot, so no figure is kept
in pyplot's global registry and nothing opens a window. Without matplotlib, drawing raises ``PlotsUnavailable``
and ``plots_available()`` is False: a run then writes its digit grids and metrics, and
``note_plots_missing`` says once how to get the plots.
"""
from __future__ import annotations

import io
import math
import sys

from ..files import write_bytes

DPI = 100  # pixels per inch: a figure's size is given in pixels
INSTALL_HINT = 'python -m pip install "matplotlib>=3.7" (the plot extra: pip install -e ".[plot]" in a checkout)'
_noted = []  # the plots a run left out, once said


class PlotsUnavailable(ImportError):
    """matplotlib cannot be imported, so a plot cannot be drawn; the message says how to install it."""


def _matplotlib():
    """(matplotlib's Figure class, its Agg canvas class, matplotlib.ticker), imported on first use."""
    try:
        from matplotlib import ticker
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise PlotsUnavailable(f"the plots need matplotlib, which cannot be imported ({err}): "
                               f"{INSTALL_HINT}") from None
    return Figure, FigureCanvasAgg, ticker


def plots_available() -> bool:
    """Whether matplotlib can be imported, so that the plots can be drawn."""
    try:
        _matplotlib()
    except PlotsUnavailable:
        return False
    return True


def note_plots_missing(name: str, stream=None) -> None:
    """Say on one line of ``stream`` (stderr) that the plot ``name`` was not drawn and how to get it;
    only the first call of a process says anything, so a run that skips a plot every epoch says it once."""
    if not _noted:
        _noted.append(name)
        print(f"minivae: {name} not drawn: plots need matplotlib: {INSTALL_HINT}", file=stream or sys.stderr,
              flush=True)


def new_figure(width: int, height: int):
    """An empty matplotlib ``Figure`` of ``width`` × ``height`` pixels on the Agg canvas, laid out by
    matplotlib's constrained layout. No matplotlib raises ``PlotsUnavailable``."""
    figure_class, canvas_class, _ = _matplotlib()
    figure = figure_class(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    canvas_class(figure)
    return figure


def save_png(figure, path):
    """Write ``figure`` as a PNG of its size in pixels to ``path`` atomically (``minivae.files``); the path.

    The PNG carries no software version, so the same drawing gives the same bytes.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return write_bytes(path, buffer.getvalue())


def _finite_points(panels: dict, log: bool) -> dict:
    """``panels`` with each curve's points that cannot be drawn left out (non-finite; not positive on
    log axes) and the curves left empty dropped, as lists sorted by x."""
    drawable = {}
    for panel, curves in panels.items():
        drawable[panel] = {}
        for name, (xs, ys) in curves.items():
            points = sorted((float(x), float(y)) for x, y in zip(xs, ys)
                            if math.isfinite(x) and math.isfinite(y) and (not log or (x > 0 and y > 0)))
            if points:
                drawable[panel][name] = ([x for x, _ in points], [y for _, y in points])
    return drawable


def line_plot(panels: dict, title: str, x_label: str, y_label: str, log: bool = False, width: int = 640,
              height: int = 400, legend: str = "best"):
    """A matplotlib ``Figure`` of ``width`` × ``height`` pixels: one panel per item of ``panels``
    ({panel title: {curve name: (xs, ys)}}), side by side and sharing the y axis, each curve a line
    with a dot at every point.

    ``title`` goes above the panels (a single untitled panel takes it as its own), ``x_label``
    under each panel and ``y_label`` left of the first; the legend (one entry and one colour per
    curve name, in order of first appearance) at ``legend``: a place inside the last panel
    ("best", "upper right", ...) or, starting "outside", beside the panels ("outside lower
    center", "outside right upper", ...). With ``log`` both axes are logarithmic, the x ticks are
    the points' x values, and y values within two decades get round ticks (1, 2, 5 × 10^k);
    otherwise whole-number x values get whole-number ticks (epochs). Points that cannot be drawn
    (non-finite, or not positive on log axes) are left out; no point left raises ``ValueError``,
    and matplotlib's absence ``PlotsUnavailable`` (an ``ImportError``).
    """
    drawable = _finite_points(panels, log)
    if not any(drawable.values()):
        raise ValueError(f"line_plot: there is no {'positive' if log else 'finite'} point to draw in {title!r}")
    _, _, ticker = _matplotlib()
    figure = new_figure(width, height)
    axes = figure.subplots(1, len(drawable), sharey=True, squeeze=False)[0]
    lines = {}
    names = list(dict.fromkeys(name for curves in drawable.values() for name in curves))
    for ax, (panel, curves) in zip(axes, drawable.items()):
        for name, (xs, ys) in curves.items():
            (lines[name],) = ax.plot(xs, ys, marker="o", markersize=4, color=f"C{names.index(name) % 10}")
        every_x = sorted({x for xs, _ in curves.values() for x in xs})
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(every_x, [f"{x:g}" for x in every_x])
            ax.xaxis.set_minor_locator(ticker.NullLocator())
        elif all(x == round(x) for x in every_x):
            ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.set_title(panel or (title if len(drawable) == 1 else ""))
        ax.set_xlabel(x_label)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel(y_label)
    if log:
        _round_log_ticks(axes[0], [y for curves in drawable.values() for _, ys in curves.values() for y in ys], ticker)
    if len(drawable) > 1 or next(iter(drawable)):
        figure.suptitle(title)
    handles = [lines[name] for name in names]
    if legend.startswith("outside"):
        columns = (len(names) if len(names) <= 4 else 3) if "center" in legend else 1
        figure.legend(handles, names, loc=legend, ncols=columns)
    else:
        axes[-1].legend(handles, names, loc=legend)
    return figure


def _round_log_ticks(ax, ys: list, ticker) -> None:
    """On a log y axis whose values span less than two decades (too few powers of ten to read it by),
    ticks at 1, 2 and 5 × 10^k labelled as plain numbers; wider spans keep matplotlib's decades."""
    low, high = min(ys), max(ys)
    if high / low >= 100:
        return
    ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
             for m in (1, 2, 5)]
    ax.set_yticks([t for t in ticks if low / 1.5 <= t <= high * 1.5], minor=False)
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_locator(ticker.NullLocator())
