"""Binary cross-entropy with logits, summed per row, fused with its gradient: one compiled pass.

ℓ(z, t) = t·softplus(−z) + (1 − t)·softplus(z) = L + t·max(−z, 0) + (1 − t)·max(z, 0), with
L = log1p(e^{−|z|}); a term whose weight t or 1 − t is exactly 0 counts 0 (so ℓ(+∞, 1) = 0, not
0·∞). Every term is non-negative: nothing cancels. ∂ℓ/∂z = σ(z) − t with σ(z) = 1/(1 + e^{−|z|})
for z ≥ 0 and e^{−|z|}/(1 + e^{−|z|}) otherwise, so that nothing overflows: σ(±∞) = 1, 0.
e^{−|z|} is computed once and serves both. Its reference is the composition it implements
(``minivae.functions.binary_cross_entropy_with_logits`` beneath ``bernoulli_log_prob``).

``logits`` is (rows, d) and ``targets`` (target_rows, d), with rows a multiple of target_rows:
row r of the logits is scored against target row r mod target_rows (S samples of a batch share
the batch's targets).

float32, the training dtype, computes e^{−|z|} and log1p with the polynomials below, which LLVM
vectorizes (Numba calls the scalar C library for ``math.exp`` and ``math.log1p``, which would cost
3–9 ns per element; the llvmlite here is built without Intel's SVML, so installing its runtime
changes nothing): the whole pass — exponential, log1p, loss, gradient, the range check of the
targets — is one loop over the data. float64, the checking dtype, calls the C library (exact to
the last bit or so). Errors of the float32 functions against float64, over a dense grid (tests/test_kernels.py): at most
0.93 units in the last place for e^{−a}, a ∈ [0, 87], and 2.9 for log1p on [0, 1]; the loss and
gradient they make differ from the NumPy ufuncs' by about 1e-7 relative.
"""
from __future__ import annotations

import math

import numpy as np

from .backend import FAST_ARITHMETIC, jit, numba

if numba is not None:
    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic

    @intrinsic
    def _float32_from_bits(typingctx, bits):
        """The float32 whose IEEE bits are the int32 ``bits`` (a register move, which vectorizes)."""
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())
        return types.float32(types.int32), codegen
else:  # never called: the references run
    _float32_from_bits = None

_LOG2E = np.float32(1.4426950408889634)
_LN2_HIGH = np.float32(0.693359375)           # 8 significant bits: n·_LN2_HIGH is exact for |n| < 2^15
_LN2_LOW = np.float32(-2.12194440054690583e-4)  # ln 2 − _LN2_HIGH
_EXP_CUTOFF = np.float32(-87.0)                # e^{−87} = 1.6e-38, near float32's smallest normal number
_TAYLOR = tuple(np.float32(1 / math.factorial(k)) for k in range(8))
_ATANH = tuple(np.float32(2 / (2 * k + 1)) for k in range(7))


@jit(fastmath=("contract",))
def _polynomial(coefficients, x):
    """Σ_k coefficients[k]·x^k by Horner's rule (the tuple is a constant: the loop unrolls)."""
    p = coefficients[-1]
    for k in range(len(coefficients) - 2, -1, -1):
        p = p * x + coefficients[k]
    return p


@jit(fastmath=("contract",))  # fused multiply-adds, but no reassociation: the two-part reduction stays as written
def exp_nonpositive(x):
    """e^x for float32 x ≤ 0, vectorizable: x = n·ln 2 + r with |r| ≤ ½ ln 2, e^r from its Taylor
    polynomial of degree 7 (truncation below 2^-27), 2^n put into the exponent bits. Below −87 the
    result is 0 (the exact value is under 1.6e-38); NaN gives NaN."""
    xc = max(x, _EXP_CUTOFF)
    n = np.floor(xc * _LOG2E + np.float32(0.5))
    r = (xc - n * _LN2_HIGH) - n * _LN2_LOW
    p = _polynomial(_TAYLOR, r)
    scale = _float32_from_bits(np.int32((np.int32(n) + np.int32(127)) << np.int32(23)))  # 2^n, n ≥ −126
    e = p * scale
    return e if x >= _EXP_CUTOFF else (np.float32(0) if x < _EXP_CUTOFF else x)


@jit(fastmath=("contract",))
def log1p_unit(e):
    """log1p(e) for float32 e in [0, 1], vectorizable: 2·atanh(s) with s = e/(2 + e) ∈ [0, ⅓], from
    its series 2s·Σ_k s^{2k}/(2k + 1) to k = 6 (truncation below 2^-26, relative). Exact at 0."""
    return _two_atanh(e / (np.float32(2) + e))


@jit(fastmath=("contract",))
def _two_atanh(s):
    """2·atanh(s) = log((1 + s)/(1 − s)) for float32 s in [0, ⅓] (``log1p_unit``'s series)."""
    return s * _polynomial(_ATANH, s * s)


@jit(fastmath=FAST_ARITHMETIC)
def _bce_rows(logits, targets, loss_rows, grad, want_grad, polynomials):
    """The pass; ``polynomials`` (float32) takes e^{−|z|} and log1p from the functions above, else the C library's."""
    zero, one, two = logits.dtype.type(0), logits.dtype.type(1), logits.dtype.type(2)
    outside = 0
    for i in range(logits.shape[0]):
        row = i % targets.shape[0]
        total = 0.0
        for j in range(logits.shape[1]):
            z, t = logits[i, j], targets[row, j]
            outside += not (t >= zero and t <= one)
            if polynomials:
                e = exp_nonpositive(-abs(z))
                one_plus_e, two_plus_e = one + e, two + e
                reciprocal = one / (one_plus_e * two_plus_e)  # one division serves σ and log1p's e/(2 + e)
                sigmoid = (one if z >= zero else e) * (two_plus_e * reciprocal)
                log1p_e = _two_atanh(e * (one_plus_e * reciprocal))
            else:
                e = math.exp(-abs(z))
                sigmoid, log1p_e = (one if z >= zero else e) / (one + e), math.log1p(e)
            positive, negative = max(z, zero), max(-z, zero)  # a term of weight 0 is dropped, also at ±∞:
            total += log1p_e + (zero if t == zero else t * negative) + (zero if t == one else (one - t) * positive)
            if want_grad:
                grad[i, j] = sigmoid - t
        loss_rows[i] = total
    return outside


def bce_with_logits_rows(logits, targets, loss_rows, grad=None) -> int:
    """loss_rows[i] = Σ_j ℓ(z_ij, t_ij) and grad = ∂ℓ/∂z = σ(z) − t, in one pass; ``grad=None`` (no
    gradient wanted, as in evaluation) writes no gradient. Row sums accumulate in float64.

    Returns how many targets lie outside [0, 1] (NaN counts).
    """
    want_grad = grad is not None
    return _bce_rows(logits, targets, loss_rows, grad if want_grad else loss_rows.reshape(-1, 1)[:0], want_grad,
                     logits.dtype == np.float32)


@jit()
def scale_rows(g, rows, out):
    """out[i, j] = g[i] · rows[i, j] for 1-D ``g`` and 2-D ``rows`` and ``out`` of one dtype (the cross-entropy's
    backward: the loss's gradient per row times the saved ∂ℓ/∂z); every product rounded once, as NumPy's."""
    for i in range(rows.shape[0]):
        for j in range(rows.shape[1]):
            out[i, j] = g[i] * rows[i, j]
