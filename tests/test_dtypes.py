"""Every constructor taking a dtype refuses, at once and naming the supported ones, what it cannot run in."""
import numpy as np
import pytest

import minivae as mv
from minivae.distributions import StandardNormal
from minivae.nn import MLP, Linear

CONSTRUCTORS = {
    "VAE": lambda dtype: mv.VAE(8, (4,), 2, dtype=dtype),
    "Linear": lambda dtype: Linear(3, 2, dtype=dtype),
    "MLP": lambda dtype: MLP([3, 4, 2], dtype=dtype),
    "StandardNormal": lambda dtype: StandardNormal(3, dtype=dtype),
}


@pytest.mark.parametrize("name", sorted(CONSTRUCTORS))
@pytest.mark.parametrize("dtype", [np.float16, np.longdouble, np.int32, "complex64", "no such dtype", bool, object])
def test_an_unsupported_dtype_is_refused_at_construction_naming_the_supported_ones(name, dtype):
    if dtype is np.longdouble and np.dtype(np.longdouble) == np.float64:
        pytest.skip("long double is float64 on this platform")
    with pytest.raises(TypeError, match=f"^{name}: dtype must be float32 or float64, got "):
        CONSTRUCTORS[name](dtype)


@pytest.mark.parametrize("name", sorted(CONSTRUCTORS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64, "float32", np.dtype("float64")])
def test_float32_and_float64_build(name, dtype):
    built = CONSTRUCTORS[name](dtype)
    arrays = [p.data for p in built.parameters()] if hasattr(built, "parameters") else [built.mu.data]
    assert {a.dtype for a in arrays} == {np.dtype(dtype)}


def test_a_float16_vae_was_accepted_and_then_failed_inside_numpys_generator():
    """The fault this guards: construction must fail, not the first draw."""
    with pytest.raises(TypeError, match="VAE: dtype must be float32 or float64, got float16"):
        mv.VAE(8, (4,), 2, dtype=np.float16)
