"""The default pool of ``programs``: every public op of the engine and the model's functions."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .. import functions
from ..engine import ops
from .language import DISTINCT, NONZERO, POSITIVE, REAL, SEPARATED, SMALL, UNIT, PoolEntry
from .strategies import reduction_axes


def _axis_params(*arrays):
    return st.fixed_dictionaries({"axis": reduction_axes(arrays[0].ndim), "keepdims": st.booleans()})


def _reshape_params(x):
    return st.sampled_from(_factorizations(x.size)).map(lambda shape: {"shape": shape})


def _factorizations(n: int, max_dims: int = 3) -> list:
    """Every shape of at most ``max_dims`` sides whose product is n; a (n,) and a -1 form first."""
    shapes = [(n,), (-1,)]
    def extend(prefix, rest):
        if len(prefix) < max_dims:
            for side in range(1, rest + 1):
                if rest % side == 0:
                    shape = prefix + (side,)
                    if side == rest and shape not in shapes:
                        shapes.append(shape)
                    extend(shape, rest // side)
    extend((), n)
    if n == 1:
        shapes.append(())
    return shapes


def _transpose_params(x):
    axes = st.permutations(range(x.ndim)).flatmap(
        lambda p: st.tuples(*[st.sampled_from([a, a - x.ndim]) for a in p]) if p else st.just(()))
    return st.fixed_dictionaries({"axes": st.one_of(st.none(), axes)})


def _index_params(x):
    n = x.shape[0]
    repeated = hnp.arrays(np.int64, st.integers(1, 4), elements=st.integers(-n, n - 1))
    kinds = [repeated,                                                       # x[[1, 1, -3]]: repeats add up
             st.integers(-n, n - 1),                                         # x[i]
             st.builds(slice, st.none() | st.integers(-n, n - 1), st.none() | st.integers(-n, n),
                       st.sampled_from([None, 1, 2, -1])).filter(lambda s: len(range(n)[s]) > 0),
             hnp.arrays(np.bool_, x.shape).map(lambda m: np.where(np.arange(m.size).reshape(m.shape) == 0, True, m)),
             st.just((Ellipsis, None))]
    if x.ndim >= 2:
        m = x.shape[1]
        kinds.append(hnp.arrays(np.int64, st.integers(1, 3), elements=st.integers(-m, m - 1)).map(
            lambda i: (slice(None), i)))                                     # x[:, [0, 0]]
    return st.one_of(kinds).map(lambda index: {"index": index})


def _concatenate_shapes(first):
    axis = st.integers(0, len(first) - 1)
    return st.tuples(axis, st.integers(1, 3)).map(lambda p: (first[:p[0]] + (p[1],) + first[p[0] + 1:],))


def _concatenate_params(x, y):
    axes = [a for a in range(x.ndim) if x.shape[:a] + x.shape[a + 1:] == y.shape[:a] + y.shape[a + 1:]]
    return st.sampled_from(axes + [a - x.ndim for a in axes]).map(lambda a: {"axis": a})


def _matmul_shapes(first):
    k = first[-1]
    return st.tuples(st.integers(1, 3), st.booleans()).map(lambda p: ((*first[:-2], k, p[0]) if p[1] else (k, p[0]),))


def _linear_relu(x, weight, bias, *, relu):
    return (functions.linear_relu if relu else functions.linear)(x, weight, bias)


def _linear_relu_params(x, w, b):
    pre = x @ w.T + b
    return st.fixed_dictionaries({"relu": st.sampled_from([False, True] if np.all(np.abs(pre) >= 0.2) else [False])})


def _axis_only(x):
    return st.integers(-max(x.ndim, 1), max(x.ndim, 1) - 1).map(lambda a: {"axis": a})


def _where_params(x, y):
    shape = np.broadcast_shapes(x.shape, y.shape)
    return hnp.arrays(np.bool_, shape).map(lambda c: {"condition": c})


def _suffix_or_same(first):
    return st.integers(0, len(first) - 1).map(lambda k: (first[k:],))


def _samples_or_same(first):
    return st.one_of(st.just((first, first)), st.integers(1, 2).map(lambda s: (first, (s, *first))))


def _same(count):
    return lambda first: st.just((first,) * count)


def _unary(name, fn, domain=REAL):
    return PoolEntry(f"mv.{name}", fn, 1, (domain,))


def _binary(name, fn, domains=(REAL, REAL), **kwargs):
    return PoolEntry(f"mv.{name}", fn, 2, domains, **kwargs)


def _reduction(name, fn, domain=REAL):
    return PoolEntry(f"mv.{name}", fn, 1, (domain,), params=_axis_params)


POOL = (
    _unary("neg", ops.neg), _unary("exp", ops.exp, SMALL), _unary("log", ops.log, POSITIVE),
    _unary("log1p", ops.log1p, POSITIVE), _unary("sqrt", ops.sqrt, POSITIVE), _unary("abs", ops.abs, NONZERO),
    _unary("relu", ops.relu, NONZERO), _unary("tanh", ops.tanh), _unary("sigmoid", ops.sigmoid),
    _unary("softplus", ops.softplus), _unary("log_sigmoid", ops.log_sigmoid),
    _binary("add", ops.add), _binary("sub", ops.sub), _binary("mul", ops.mul),
    _binary("div", ops.div, (REAL, NONZERO)), _binary("pow", ops.pow, (POSITIVE, SMALL)),
    _binary("maximum", ops.maximum, (REAL, SEPARATED), shapes=_same(1)),
    _binary("minimum", ops.minimum, (REAL, SEPARATED), shapes=_same(1)),
    _binary("where", lambda x, y, *, condition: ops.where(condition, x, y), params=_where_params,
            template="mv.where({condition}, {0}, {1})"),
    _reduction("sum", ops.sum), _reduction("mean", ops.mean), _reduction("max", ops.max, DISTINCT),
    _reduction("logsumexp", ops.logsumexp),
    PoolEntry("mv.reshape", ops.reshape, params=_reshape_params),
    PoolEntry("mv.transpose", ops.transpose, params=_transpose_params),
    PoolEntry("mv.getitem", ops.getitem, min_dims=1, params=_index_params, template="{0}[{index}]"),
    PoolEntry("mv.concatenate", lambda x, y, *, axis: ops.concatenate([x, y], axis=axis), 2, min_dims=1,
              shapes=_concatenate_shapes, params=_concatenate_params,
              template="mv.concatenate([{0}, {1}], axis={axis})"),
    PoolEntry("mv.stack", lambda x, y, *, axis: ops.stack([x, y], axis=axis), 2, shapes=_same(1),
              params=lambda x, y: st.integers(-x.ndim - 1, x.ndim).map(lambda a: {"axis": a}),
              template="mv.stack([{0}, {1}], axis={axis})"),
    _binary("matmul", ops.matmul, min_dims=2, shapes=_matmul_shapes),
    PoolEntry("mv.linear", functions.linear, 3, min_dims=1,
              shapes=lambda first: st.integers(1, 3).map(lambda out: ((out, first[-1]), (out,)))),
    _binary("binary_cross_entropy_with_logits", functions.binary_cross_entropy_with_logits, (REAL, UNIT),
            params=lambda z, t: st.sampled_from(["mean", "sum", "none"]).map(lambda r: {"reduction": r})),
    PoolEntry("mv.softmax", ops.softmax, min_dims=1, params=_axis_only),
    PoolEntry("mv.log_softmax", ops.log_softmax, min_dims=1, params=_axis_only),
    # the model's functions (fused beneath while the numba backend is on)
    PoolEntry("mv.linear_relu", _linear_relu, 3, min_dims=1,
              shapes=lambda first: st.integers(1, 3).map(lambda out: ((out, first[-1]), (out,))),
              params=_linear_relu_params,
              template="(mv.linear_relu if {relu} else mv.linear)({0}, {1}, {2})"),
    PoolEntry("mv.bernoulli_log_prob", functions.bernoulli_log_prob, 2, (REAL, UNIT), min_dims=1,
              shapes=_suffix_or_same),
    PoolEntry("mv.gaussian_rsample", functions.gaussian_rsample, 3, (REAL, SMALL, REAL), min_dims=1,
              shapes=_samples_or_same),
    PoolEntry("mv.kl_to_standard_normal", functions.kl_to_standard_normal, 2, (REAL, SMALL), min_dims=1,
              shapes=_same(1)),
    PoolEntry("mv.kl_diagonal_gaussians", functions.kl_diagonal_gaussians, 4, (REAL, SMALL, REAL, SMALL), min_dims=1,
              shapes=_same(3)),
    PoolEntry("mv.gaussian_log_prob", functions.gaussian_log_prob, 3, (REAL, REAL, SMALL), min_dims=1,
              shapes=_same(2)),
)
"""The default pool of ``programs``: every public op of the engine, the fused ops and a Gaussian log-density."""
