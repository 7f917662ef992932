"""Figures: images of digits and plots.

``images``: digit grids (samples, reconstructions, the latent manifold) as uint8 arrays and the
small PNG writer that stores them (stdlib zlib); no text, no dependency beyond NumPy.
``plots``: plots with axes and text (the loss curve, the estimators' variance, the benchmark
charts) drawn with matplotlib, the optional ``plot`` extra, imported only when a plot is drawn.
"""
from .images import (DIGIT_SCALE, DIGIT_SHAPE, PNG_SIGNATURE, digit_grid, encode_png, manifold_grid, normal_quantile,
                     png_problem, reconstruction_grid, to_uint8, upscale, write_png)
from .plots import PlotsUnavailable, line_plot, new_figure, note_plots_missing, plots_available, save_png

__all__ = ["DIGIT_SCALE", "DIGIT_SHAPE", "PNG_SIGNATURE", "digit_grid", "encode_png", "manifold_grid",
           "normal_quantile", "png_problem", "reconstruction_grid", "to_uint8", "upscale", "write_png",
           "PlotsUnavailable", "line_plot", "new_figure", "note_plots_missing", "plots_available", "save_png"]
