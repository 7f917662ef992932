"""minivae.nn: parameters, modules, Linear's init and forward, MLPs, state dicts."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minivae as mv
from minivae import nn


def test_parameter_requires_grad_and_must_be_floating():
    p = nn.Parameter(np.zeros(3, np.float32))
    assert p.requires_grad and p.op is None and isinstance(p, mv.Tensor)
    with pytest.raises(TypeError, match="floating-point"):
        nn.Parameter(np.zeros(3, np.int64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_shapes_dtype_and_pytorch_default_init_range(dtype):
    layer = nn.Linear(400, 300, rng=0, dtype=dtype)
    bound = 1 / np.sqrt(400)
    assert layer.weight.shape == (300, 400) and layer.bias.shape == (300,)
    assert layer.weight.dtype == dtype and layer.bias.dtype == dtype
    for values in (layer.weight.data, layer.bias.data):
        assert np.abs(values).max() <= bound
        assert values.min() < -0.95 * bound and values.max() > 0.95 * bound  # spread over the whole interval
    # U(-b, b) has mean 0 and variance b²/3; 120 000 draws pin both down to about 1 %.
    w = layer.weight.data.astype(np.float64)
    assert abs(w.mean()) < 4 * bound / np.sqrt(3 * w.size)
    assert w.var() == pytest.approx(bound ** 2 / 3, rel=0.02)


def test_linear_seed_and_generator_give_the_same_init():
    a = nn.Linear(5, 3, rng=7)
    b = nn.Linear(5, 3, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    np.testing.assert_array_equal(a.bias.data, b.bias.data)
    assert not np.array_equal(a.weight.data, nn.Linear(5, 3, rng=8).weight.data)


def test_linear_forward_matches_formula_for_any_leading_axes():
    rng = np.random.default_rng(1)
    layer = nn.Linear(4, 3, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 5, 4))
    expected = x @ layer.weight.data.T + layer.bias.data
    np.testing.assert_allclose(layer(x).data, expected, rtol=1e-12)
    np.testing.assert_allclose(layer(x[0]).data, expected[0], rtol=1e-12)
    np.testing.assert_allclose(layer(x[0, 0]).data, expected[0, 0], rtol=1e-12)


def test_linear_without_bias():
    layer = nn.Linear(4, 2, bias=False, rng=0, dtype=np.float64)
    assert layer.bias is None and [name for name, _ in layer.named_parameters()] == ["weight"]
    x = np.ones((3, 4))
    np.testing.assert_allclose(layer(x).data, x @ layer.weight.data.T)


def test_linear_gradients_through_leading_axes_match_central_differences():
    rng = np.random.default_rng(2)
    layer = nn.Linear(3, 2, rng=rng, dtype=np.float64)

    def forward(x, weight, bias):
        layer.weight, layer.bias = weight, bias
        return layer(x).tanh()
    assert mv.gradcheck(forward, rng.standard_normal((2, 4, 3)), layer.weight.data.copy(), layer.bias.data.copy())


def test_linear_errors_name_the_layer_and_the_shapes():
    layer = nn.Linear(4, 2, rng=0)
    with pytest.raises(ValueError, match=r"Linear\(4, 2\).*last dimension is 4.*\(3, 5\)"):
        layer(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="in_features must be a positive int"):
        nn.Linear(0, 2)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        nn.Linear(2, 2, dtype=np.int32)
    with pytest.raises(TypeError, match="np.random.Generator"):
        nn.Linear(2, 2, rng="seed")


def test_activation_modules_apply_their_functions():
    x = np.linspace(-4, 4, 17)
    expected = {nn.ReLU: np.maximum(x, 0), nn.Tanh: np.tanh(x), nn.Sigmoid: 1 / (1 + np.exp(-x)),
                nn.Softplus: np.log1p(np.exp(x))}
    for cls, values in expected.items():
        np.testing.assert_allclose(cls()(x).data, values, rtol=1e-12, err_msg=cls.__name__)
        assert list(cls().parameters()) == []


def test_mlp_structure():
    mlp = nn.MLP([6, 5, 4, 3], activation="tanh", final_activation="sigmoid", rng=0)
    kinds = [type(m) for m in mlp]
    assert kinds == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear, nn.Sigmoid]
    assert [(m.in_features, m.out_features) for m in mlp if isinstance(m, nn.Linear)] == [(6, 5), (5, 4), (4, 3)]
    assert [name for name, _ in mlp.named_parameters()] == [
        "0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert [type(m) for m in nn.MLP([3, 2])] == [nn.Linear]
    out = mlp(np.zeros((7, 6), np.float32))
    assert out.shape == (7, 3) and out.dtype == np.float32


def test_mlp_errors():
    with pytest.raises(ValueError, match="at least two positive ints"):
        nn.MLP([5])
    with pytest.raises(ValueError, match="at least two positive ints"):
        nn.MLP([5, 0, 2])
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        nn.MLP([5, 2], activation="gelu")
    with pytest.raises(ValueError, match="unknown activation 'soft'"):
        nn.MLP([5, 2], final_activation="soft")
    with pytest.raises(TypeError, match="argument 1 is not a Module: 3"):
        nn.Sequential(nn.ReLU(), 3)


class Pair(nn.Module):
    """Two sub-modules sharing one layer, and a parameter of its own."""

    def __init__(self, rng):
        self.scale = nn.Parameter(np.ones(2, np.float32))
        self.first = nn.Sequential(nn.Linear(3, 2, rng=rng), nn.ReLU())
        self.second = nn.Linear(2, 2, rng=rng)
        self.again = self.second

    def forward(self, x):
        return self.again(self.first(x)) * self.scale


def test_named_parameters_are_dotted_and_unique():
    model = Pair(0)
    names = [name for name, _ in model.named_parameters()]
    assert names == ["scale", "first.0.weight", "first.0.bias", "second.weight", "second.bias"]
    assert len(list(model.parameters())) == 5


def test_state_dict_round_trip_copies_arrays_and_loads_in_place():
    source, target = Pair(0), Pair(1)
    state = source.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    state["scale"][:] = 5.0  # a copy: the model is untouched
    assert (source.scale.data == 1.0).all()
    state = source.state_dict()
    weight_array = target.second.weight.data
    target.load_state_dict(state)
    assert target.second.weight.data is weight_array
    x = np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_array_equal(target(x).data, source(x).data)


@pytest.mark.parametrize("edit, error, message", [
    (lambda s: s.pop("second.bias"), KeyError, r"missing keys \['second.bias'\]"),
    (lambda s: s.update(extra=np.zeros(1)), KeyError, r"unexpected keys \['extra'\]"),
    (lambda s: s.update(scale=np.ones(3, np.float32)), ValueError, r"'scale' has shape \(3,\).*\(2,\)"),
    (lambda s: s.update(scale=np.ones(2, np.float64)), TypeError, "'scale' has dtype float64.*float32"),
    # the last parameter wrong: the ones before it must not have been loaded either
    (lambda s: s.update({"second.bias": np.ones(3, np.float32)}), ValueError, r"'second.bias' has shape \(3,\)"),
    (lambda s: s.update({"second.bias": np.ones(2, np.float64)}), TypeError, "'second.bias' has dtype float64"),
])
def test_load_state_dict_errors_leave_the_model_unchanged(edit, error, message):
    source, target = Pair(0), Pair(1)
    before = target.state_dict()
    state = source.state_dict()
    edit(state)
    with pytest.raises(error, match=message):
        target.load_state_dict(state)
    for name, value in target.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_train_eval_and_zero_grad_reach_every_module():
    model = Pair(0)
    assert all(m.training for m in model.modules())
    assert model.eval() is model and not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    model(np.ones((2, 3), np.float32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


@given(st.lists(st.integers(1, 6), min_size=2, max_size=4), st.integers(1, 5))
def test_mlp_output_shape_and_parameter_count(widths, batch):
    mlp = nn.MLP(widths, rng=0)
    assert mlp(np.zeros((batch, widths[0]), np.float32)).shape == (batch, widths[-1])
    expected = sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
    assert sum(p.size for p in mlp.parameters()) == expected
