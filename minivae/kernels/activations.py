"""Bias (+ ReLU) forward, its backward with the mask, and the bias-gradient reduction.

Arrays are 2-D (batch, features); the bias is 1-D (features,). Each kernel writes into the output
arrays it is given and keeps their dtype (float32 or float64). Column sums accumulate in float64,
as the engine's reductions of float32 do. Their reference is the composition they implement
(``minivae.functions.linear`` and ``minivae.functions.linear_relu``).
"""
from __future__ import annotations

import numpy as np

from .backend import jit


@jit()
def bias_relu(pre, bias, out):
    """out = max(pre + b, 0) row by row; ``out`` may be ``pre`` itself."""
    zero = out.dtype.type(0)
    for i in range(pre.shape[0]):
        for j in range(pre.shape[1]):
            out[i, j] = max(pre[i, j] + bias[j], zero)


@jit()
def bias_add(pre, bias, out):
    """out = pre + b row by row; ``out`` may be ``pre`` itself (each sum rounded once, as NumPy's ``+``)."""
    for i in range(pre.shape[0]):
        for j in range(pre.shape[1]):
            out[i, j] = pre[i, j] + bias[j]


@jit()
def relu_backward(g, ans, grad_pre, grad_bias):
    """For ans = max(a + b, 0): grad_pre = g · 1[ans > 0] (= ∂/∂a) and grad_bias = Σ_rows grad_pre (= ∂/∂b)."""
    zero = g.dtype.type(0)
    total = np.zeros(g.shape[1], np.float64)
    for i in range(g.shape[0]):
        for j in range(g.shape[1]):
            masked = g[i, j] if ans[i, j] > zero else zero
            grad_pre[i, j] = masked
            total[j] += masked
    for j in range(g.shape[1]):
        grad_bias[j] = total[j]


@jit()
def column_sum(g, out):
    """out[j] = Σ_i g[i, j]: the gradient of a bias added to every row."""
    total = np.zeros(g.shape[1], np.float64)
    for i in range(g.shape[0]):
        for j in range(g.shape[1]):
            total[j] += g[i, j]
    for j in range(g.shape[1]):
        out[j] = total[j]
