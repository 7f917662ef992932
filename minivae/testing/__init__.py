"""Tools for testing code built on minivae with Hypothesis (needs the ``test`` extra).

- ``strategies``: shapes, well-conditioned float arrays, arrays restricted to an op's domain
  (positive, away from zero, pairwise distinct, pairs that never meet) and Tensors ready for
  ``minivae.gradcheck``;
- ``language``: the random programs' language (``Domain``, ``PoolEntry``, ``Step``, ``Program``);
- ``pool``: ``POOL``, the default pool: every public op of the engine and the model's functions;
- ``programs``: the strategy drawing random straight-line programs from a pool.

Every name is available from the package itself. Example::

    from hypothesis import given
    import minivae as mv
    from minivae import testing as mvt

    @given(mvt.tensors(mvt.positive_arrays(mvt.shapes())))
    def test_log_gradient(x):
        assert mv.gradcheck(mv.log, x)
"""
from ..gradcheck import in_float64
from .language import DISTINCT, NONZERO, POSITIVE, REAL, SEPARATED, SMALL, UNIT, Domain, PoolEntry, Program, Step
from .pool import POOL
from .programs import MAX_VALUE_SIZE, programs
from .strategies import (FLOAT_DTYPES, broadcastable_shapes, distinct_arrays, float_arrays, float_dtypes,
                         matmul_shapes, nonzero_arrays, positive_arrays, reduction_axes, separated_pairs, shapes,
                         tensors)

__all__ = ["FLOAT_DTYPES", "float_dtypes", "shapes", "broadcastable_shapes", "matmul_shapes", "reduction_axes",
           "float_arrays", "positive_arrays", "nonzero_arrays", "distinct_arrays", "separated_pairs", "tensors",
           "in_float64", "programs", "MAX_VALUE_SIZE", "Program", "Step", "PoolEntry", "POOL", "Domain", "REAL",
           "SMALL", "POSITIVE", "NONZERO", "UNIT", "DISTINCT", "SEPARATED"]
