"""Plots: the one line-plot scaffold and the figures drawn with it (the run's loss curve, the
estimators' variance, the benchmark charts), read back through matplotlib's objects and as PNG
files; and what a run does without matplotlib (simulated in a subprocess)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minivae
from minivae.figures import DIGIT_SCALE, line_plot, png_problem, save_png
from minivae.figures.images import PAIR_GAP
from minivae.figures.plots import INSTALL_HINT
from minivae.study.estimators import GRADIENT_ESTIMATORS
from minivae.study.variance import VarianceRow, variance_plot
from minivae.training.run_figures import loss_plot

matplotlib = pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")  # matplotlib's own dependency, to read its PNGs back

ROOT = Path(minivae.__file__).parents[1]
DOCS = ROOT / "docs" / "estimators"


def pixels(path) -> np.ndarray:
    """The RGB pixels of the PNG at ``path``."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def curves(ax) -> dict:
    """{legend name: (xs, ys)} of the lines of ``ax``, whose colours name them in the figure's legend."""
    legend = ax.figure.legends[0] if ax.figure.legends else ax.figure.axes[-1].get_legend()
    names = {handle.get_color(): text.get_text() for handle, text in zip(legend.legend_handles, legend.get_texts())}
    return {names[line.get_color()]: (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


# --------------------------------------------------------------------------------------- the scaffold
def test_line_plot_draws_panels_with_titles_labels_and_one_colour_per_curve():
    figure = line_plot({"left": {"a": ([1, 10, 100], [3.0, 2.0, 1.0]), "b": ([1, 10], [5.0, 4.0])},
                        "right": {"b": ([10, 1], [6.0, 7.0])}}, "the title", "x things", "y things", log=True)
    left, right = figure.axes
    assert figure.get_suptitle() == "the title" and (left.get_title(), right.get_title()) == ("left", "right")
    assert left.get_xlabel() == right.get_xlabel() == "x things" and left.get_ylabel() == "y things"
    assert left.get_xscale() == left.get_yscale() == "log"
    assert [t.get_text() for t in left.get_xticklabels()] == ["1", "10", "100"]   # the points' x values
    assert [t.get_text() for t in figure.axes[-1].get_legend().get_texts()] == ["a", "b"]
    assert curves(left) == {"a": ([1, 10, 100], [3, 2, 1]), "b": ([1, 10], [5, 4])}
    assert curves(right) == {"b": ([1, 10], [7, 6])}  # sorted by x, in b's colour in both panels
    assert left.get_shared_y_axes().joined(left, right)


def test_line_plot_leaves_out_points_it_cannot_draw_and_needs_one():
    ax = line_plot({"": {"a": ([1, 2, 3, 4], [2.0, float("nan"), float("inf"), 1.0])}}, "t", "x", "y").axes[0]
    assert curves(ax) == {"a": ([1, 4], [2, 1])}
    log = line_plot({"": {"a": ([0, 1, 2], [1.0, -1.0, 3.0])}}, "t", "x", "y", log=True).axes[0]
    assert curves(log) == {"a": ([2], [3])}
    with pytest.raises(ValueError, match="no finite point"):
        line_plot({"": {"a": ([1], [float("nan")])}}, "t", "x", "y")
    with pytest.raises(ValueError, match="no positive point"):
        line_plot({"": {"a": ([1], [-1.0])}}, "t", "x", "y", log=True)


def test_whole_number_x_values_get_whole_number_ticks():
    ax = line_plot({"": {"a": ([1, 2, 3], [3.0, 2.0, 1.0])}}, "t", "epoch", "y").axes[0]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(t == round(t) for t in ticks)


def test_save_png_writes_the_figure_at_its_size_the_same_bytes_each_time(tmp_path):
    figure = line_plot({"": {"a": ([1, 2, 3], [3.0, 2.0, 1.0])}}, "t", "x", "y", width=500, height=300)
    path = save_png(figure, tmp_path / "plot.png")
    image = pixels(path)
    assert png_problem(path) is None and image.shape == (300, 500, 3)
    assert (image == 255).all(axis=2).mean() > 0.5 and (image < 128).any()        # a white page with ink
    blue = np.array(matplotlib.colors.to_rgb("C0")) * 255
    assert (np.abs(image - blue).max(axis=2) < 8).sum() > 100                     # the line, in its colour
    assert save_png(figure, tmp_path / "again.png").read_bytes() == path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.png", "plot.png"]  # no temporary left


# --------------------------------------------------------------------------------------- the figures
HISTORY = [{"epoch": e, "train_neg_elbo": 200.0 - 10 * e, "test_neg_elbo": 195.0 - 9 * e} for e in (1, 2, 3)]


def test_the_loss_plot_draws_train_and_held_out_nats_per_epoch():
    (ax,) = loss_plot(HISTORY).axes
    assert ax.get_title() == "negative ELBO per epoch" and ax.figure.get_suptitle() == ""  # one title
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", "nats per digit")
    assert curves(ax) == {"train": ([1, 2, 3], [190, 180, 170]), "held-out": ([1, 2, 3], [186, 177, 168])}


ROWS = [VarianceRow(state, estimator, s, 10.0 ** (3 - i) / s, 1.0) for state in ("init", "trained")
        for i, estimator in enumerate(GRADIENT_ESTIMATORS) for s in (1, 10, 100)]


def test_the_variance_plot_has_a_panel_per_state_and_a_line_per_estimator(tmp_path):
    figure = variance_plot(ROWS, GRADIENT_ESTIMATORS)
    assert [ax.get_title() for ax in figure.axes] == ["init", "trained"]
    assert "variance" in figure.get_suptitle() and figure.axes[0].get_ylabel() == "variance per parameter"
    assert [t.get_text() for t in figure.legends[0].get_texts()] == list(GRADIENT_ESTIMATORS)
    for ax in figure.axes:
        assert ax.get_yscale() == "log" and ax.get_xlabel() == "samples S per digit"
        assert curves(ax) == {e: ([1, 10, 100], [10.0 ** (3 - i) / s for s in (1, 10, 100)])
                              for i, e in enumerate(GRADIENT_ESTIMATORS)}
    assert pixels(save_png(figure, tmp_path / "v.png")).shape == (400, 760, 3)
    with pytest.raises(ValueError, match="no rows"):
        variance_plot([], GRADIENT_ESTIMATORS)


@pytest.mark.parametrize("folder", [DOCS, DOCS / "logistic"], ids=["gaussian", "logistic"])
def test_the_documented_variance_figures_are_what_their_rows_draw(folder, tmp_path):
    rows = [VarianceRow(**row) for row in json.loads((folder / "variance.json").read_text())]
    documented = pixels(folder / "variance.png").astype(int)

    def differing(rows):  # the share of pixels that differ visibly from the documented figure
        drawn = pixels(save_png(variance_plot(rows, GRADIENT_ESTIMATORS), tmp_path / "drawn.png")).astype(int)
        assert drawn.shape == documented.shape
        return (np.abs(drawn - documented).max(axis=2) > 64).mean()

    assert differing(rows) < 0.002   # the same drawing (a newer matplotlib may move a few pixels of text)
    moved = [VarianceRow(r.state, r.estimator, r.samples, r.variance * (1 + (r.samples == 10)), 0.0) for r in rows]
    assert differing(moved) > 0.002  # which one changed point would fail


def test_the_benchmark_charts_are_a_log_log_line_chart_and_stacked_bars(tmp_path):
    from benchmarks import charts
    series = {"minivae (numba)": ([32, 128, 1024], [2.3, 4.0, 40.0]),
              "floor (matrix products)": ([32, 128, 1024], [1.0, 2.6, 18.0])}
    scaling = charts.scaling_chart(series, "ms per step")
    (ax,) = scaling.axes
    assert (ax.get_xscale(), ax.get_yscale(), ax.get_xlabel(), ax.get_ylabel()) == ("log", "log", "batch size",
                                                                                    "ms per step")
    assert curves(ax) == series and ax.get_title() == "ms per step"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "2", "5", "10", "20", "50"]  # within 2 decades
    assert [t.get_text() for t in scaling.legends[0].get_texts()] == list(series)
    assert pixels(charts.write(tmp_path / "scaling.png", scaling)).shape == (560, 900, 3)
    parts = charts.parts_chart({"minivae (numba)": {"dense": 2.9, "adam": 0.4}, "floor": {"dense": 2.6}}, "parts")
    (ax,) = parts.axes
    bars = [(round(p.get_x(), 6), round(p.get_width(), 6), round(p.get_y() + p.get_height() / 2)) for p in ax.patches]
    assert sorted(bars) == [(0, 2.6, 1), (0, 2.9, 0), (2.6, 0, 1), (2.9, 0.4, 0)]   # adam stacked after dense
    assert [t.get_text() for t in ax.texts] == [" 3.30 ms", " 2.60 ms"]
    assert [t.get_text() for t in parts.legends[0].get_texts()] == ["dense", "adam"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["minivae (numba)", "floor"]
    image = pixels(charts.write(tmp_path / "parts.png", parts))
    assert image.shape[1] == 900 and (image < 128).any()
    with pytest.raises(ValueError):
        charts.scaling_chart({"empty": ([], [])}, "nothing")
    with pytest.raises(ValueError):
        charts.parts_chart({}, "nothing")


# --------------------------------------------------------------------------------------- without matplotlib
WITH_MATPLOTLIB = "import sys; from minivae.cli import main; sys.exit(main(sys.argv[1:]))"
WITHOUT_MATPLOTLIB = "import sys; sys.modules['matplotlib'] = None; " + WITH_MATPLOTLIB.removeprefix("import sys; ")


def minivae_process(program: str, *args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", program, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def notes(stderr: str) -> list:
    return [line for line in stderr.splitlines() if "not drawn" in line]


def test_a_run_without_matplotlib_writes_its_grids_and_metrics_and_says_once_how_to_get_the_plot(tmp_path, mnist_dir):
    out = tmp_path / "run"
    args = ["train", "--epochs", "2", "--batch-size", "32", "--hidden", "16", "--latent-dim", "2",
            "--data-dir", mnist_dir, "--out", out]
    done = minivae_process(WITHOUT_MATPLOTLIB, *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (note,) = notes(done.stderr)   # two epochs, one note
    assert note == f"minivae: loss.png not drawn: plots need matplotlib: {INSTALL_HINT}"
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2 and not (out / "loss.png").exists()
    for name in ("reconstructions.png", "samples.png", "manifold.png"):
        assert png_problem(out / name) is None, name
    samples = pixels(out / "samples.png")
    assert samples.shape[:2] == (DIGIT_SCALE * (8 * 30 + 2),) * 2 and samples.std() > 10
    assert pixels(out / "reconstructions.png").shape[0] == DIGIT_SCALE * (2 * (2 * 30 + 2) + PAIR_GAP)
    again = minivae_process(WITHOUT_MATPLOTLIB, "train", "--out", out, "--resume", cwd=tmp_path)
    assert again.returncode == 0 and "already complete: 2 of 2 epochs trained" in again.stdout  # not broken
    assert "rewrote" not in again.stdout
    with_plots = minivae_process(WITH_MATPLOTLIB, "train", "--out", out, "--resume", cwd=tmp_path)
    assert with_plots.returncode == 0 and "rewrote its figures: loss.png" in with_plots.stdout
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert (out / "loss.png").read_bytes() == save_png(loss_plot(metrics), tmp_path / "loss.png").read_bytes()


def test_estimators_without_matplotlib_write_the_table_and_rows_and_say_how_to_get_the_plot(tmp_path):
    done = minivae_process(WITHOUT_MATPLOTLIB, "estimators", "--hidden", "8", "--latent-dim", "2", "--samples", "1",
                           "3", "--repeats", "2", "--batch", "4", "--train-steps", "2", "--out", tmp_path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert notes(done.stderr) == [f"minivae: variance.png not drawn: plots need matplotlib: {INSTALL_HINT}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["variance.json", "variance.md"]
    assert f"wrote {tmp_path / 'variance.md'}, {tmp_path / 'variance.json'}" in done.stdout


def test_matplotlib_is_imported_only_where_a_plot_is_drawn(tmp_path):
    probe = ("import sys; import minivae.cli, minivae.figures, minivae.training, minivae.study.variance, "
             "benchmarks.charts; print('matplotlib' in sys.modules)")
    assert minivae_process(probe, cwd=ROOT).stdout.strip() == "False"
    missing = ("import sys; sys.modules['matplotlib'] = None\n"
               "from minivae.figures import PlotsUnavailable, line_plot, plots_available\n"
               "assert not plots_available()\n"
               "try:\n    line_plot({'': {'a': ([1], [1.0])}}, 't', 'x', 'y')\n"
               "except PlotsUnavailable as err:\n    print(err)")
    done = minivae_process(missing, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip().endswith(INSTALL_HINT) and "\n" not in done.stdout.strip()
