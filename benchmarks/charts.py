"""The benchmark's PNG charts, drawn with matplotlib through minivae's plot scaffold (``minivae.figures``).

``scaling_chart``: ms per step against batch size, one line per contender (log-log axes).
``parts_chart``: a step's time split into its parts, one stacked bar per backend.
Both return a matplotlib ``Figure`` and ``write`` saves one as a PNG, atomically. Without
matplotlib (the ``plot`` extra, which the ``bench`` extra pulls in) they raise
``minivae.figures.PlotsUnavailable``, an ``ImportError`` whose message says how to install it.
"""
from __future__ import annotations

from minivae.figures import line_plot, new_figure, save_png


def scaling_chart(series: dict, title: str, x_label: str = "batch size", y_label: str = "ms per step",
                  width: int = 900, height: int = 560):
    """A log-log line chart of ``{name: (xs, ys)}``, ``width`` × ``height`` pixels, with the legend
    below and the x ticks at the points' x values. No positive point raises ``ValueError``."""
    return line_plot({"": series}, title, x_label, y_label, log=True, width=width, height=height,
                     legend="outside lower center")


def parts_chart(bars: dict, title: str, unit: str = "ms", width: int = 900, height: int = 0):
    """A chart of horizontal stacked bars ``{bar: {part: value in unit}}``, the first bar on top.

    Every bar stacks its parts in order of their first appearance (parts a bar lacks count 0,
    negative values too), with each bar's total at its end and a legend of the parts below.
    ``height`` 0 fits the height to the bars and parts. No bar raises ``ValueError``.
    """
    if not bars:
        raise ValueError("parts_chart: there is no bar to draw")
    parts = list(dict.fromkeys(part for values in bars.values() for part in values))
    figure = new_figure(width, height or 110 + 40 * len(bars) + 24 * -(-len(parts) // 2))
    axes = figure.subplots()
    names, ends = list(bars), [0.0] * len(bars)
    for j, part in enumerate(parts):
        widths = [max(bars[name].get(part, 0.0), 0.0) for name in names]
        axes.barh(names, widths, left=ends, color=f"C{j % 10}", label=part)
        ends = [end + w for end, w in zip(ends, widths)]
    for row, end in enumerate(ends):
        axes.text(end, row, f" {end:.2f} {unit}", va="center")
    axes.invert_yaxis()
    axes.margins(x=0.12)
    axes.set_xlabel(unit)
    axes.grid(True, axis="x", alpha=0.3)
    figure.suptitle(title)
    figure.legend(loc="outside lower center", ncols=2)
    return figure


def write(path, figure):
    """Write ``figure`` (from ``scaling_chart`` or ``parts_chart``) as a PNG to ``path``, atomically; the path."""
    return save_png(figure, path)
