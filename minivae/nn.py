"""Neural-network building blocks: parameters, modules, linear layers, activations and MLPs.

A ``Module`` finds its parameters by looking at its attributes: every ``Parameter`` is one of its
own, every ``Module`` a child whose parameters it names with a dotted prefix (``"0.weight"``,
``"decoder.2.bias"``), as in ``torch.nn``.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from . import functions
from .checks import as_generator, float_dtype, is_positive_int
from .engine import Tensor, relu, sigmoid, softplus, tanh


class Parameter(Tensor):
    """A leaf tensor that a module learns: it always requires grad."""

    __slots__ = ()

    def __init__(self, data, name: str | None = None):
        super().__init__(data, requires_grad=True, name=name)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class Module:
    """A differentiable function with parameters; subclasses define ``forward``."""

    training = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}: forward is not defined")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ----------------------------------------------------------------- structure
    def named_children(self) -> Iterator[tuple[str, Module]]:
        """The sub-modules held as attributes, in the order they were set."""
        return ((name, value) for name, value in vars(self).items() if isinstance(value, Module))

    def modules(self) -> Iterator[Module]:
        """This module and every module below it."""
        yield self
        for _, child in self.named_children():
            yield from child.modules()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) pairs, each parameter once even where modules share it."""
        seen = set()
        for name, param in self._all_named_parameters(prefix):
            if id(param) not in seen:
                seen.add(id(param))
                yield name, param

    def _all_named_parameters(self, prefix: str):
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child._all_named_parameters(f"{prefix}{name}.")

    def parameters(self) -> Iterator[Parameter]:
        return (param for _, param in self.named_parameters())

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """(dotted name, tensor) pairs for the floating tensors the module computes with but does not
        learn (such as the VAE's prior), as in ``torch.nn``; a module lists its own in ``_buffers``."""
        yield from ((prefix + name, tensor) for name, tensor in self._buffers())
        for name, child in self.named_children():
            yield from child.named_buffers(f"{prefix}{name}.")

    def buffers(self) -> Iterator[Tensor]:
        return (tensor for _, tensor in self.named_buffers())

    def _buffers(self) -> tuple:
        """This module's own buffers as (name, tensor) pairs (none unless a subclass says so)."""
        return ()

    # ----------------------------------------------------------------- modes and gradients
    def train(self, mode: bool = True) -> Module:
        """Set ``training`` on this module and all below it; return self."""
        for module in self.modules():
            module.training = bool(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        for param in self.parameters():
            param.grad = None

    # ----------------------------------------------------------------- saving and loading
    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter's array, by dotted name."""
        return {name: param.data.copy() for name, param in self.named_parameters()}

    def load_state_dict(self, state: Mapping) -> None:
        """Copy the arrays of ``state`` into the parameters, in place, after checking all of them.

        The keys must be exactly the parameter names, and each array must have its parameter's
        shape and dtype (no silent casts); otherwise nothing is loaded.
        """
        params = dict(self.named_parameters())
        missing, unexpected = sorted(params.keys() - state.keys()), sorted(state.keys() - params.keys())
        if missing or unexpected:
            raise KeyError(f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        arrays = {name: np.asarray(state[name]) for name in params}
        for name, param in params.items():
            array = arrays[name]
            if array.shape != param.shape:
                raise ValueError(f"{type(self).__name__}.load_state_dict: {name!r} has shape {array.shape}, "
                                 f"the parameter has shape {param.shape}")
            if array.dtype != param.dtype:
                raise TypeError(f"{type(self).__name__}.load_state_dict: {name!r} has dtype {array.dtype}, "
                                f"the parameter has dtype {param.dtype}; convert it explicitly with .astype")
        for name, param in params.items():
            np.copyto(param.data, arrays[name])

    # ----------------------------------------------------------------- printing
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        children = [f"  ({name}): " + repr(child).replace("\n", "\n  ") for name, child in self.named_children()]
        body = "\n" + "\n".join(children) + "\n" if children else ""
        return f"{type(self).__name__}({self.extra_repr()}{body})"


class Linear(Module):
    """y = x Wᵀ + b, with W of shape (out_features, in_features), over the last axis of x.

    W and b start from U(-1/√in_features, 1/√in_features), the default of ``torch.nn.Linear``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None, dtype=np.float32):
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not is_positive_int(value):
                raise ValueError(f"Linear: {name} must be a positive int, got {value!r}")
        dtype, rng = float_dtype(dtype, "Linear"), as_generator(rng, "Linear")
        self.in_features, self.out_features = int(in_features), int(out_features)
        bound = 1.0 / np.sqrt(in_features)
        self.weight = Parameter(rng.uniform(-bound, bound, (out_features, in_features)).astype(dtype))
        self.bias = Parameter(rng.uniform(-bound, bound, out_features).astype(dtype)) if bias else None

    def forward(self, x) -> Tensor:
        """x Wᵀ + b (``minivae.functions.linear``), x of shape (..., in_features) → (..., out_features).

        Raises ValueError when the last axis of x is not ``in_features`` long."""
        return functions.linear(self._checked(x), self.weight, self.bias)

    def fused_with_relu(self, x) -> Tensor:
        """max(x Wᵀ + b, 0) as one call of ``functions.linear_relu`` (one fused node on the fast kernels)."""
        return functions.linear_relu(self._checked(x), self.weight, self.bias)

    def _checked(self, x) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}): expected an input whose last "
                             f"dimension is {self.in_features}, got shape {x.shape}")
        return x

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Sequential(Module):
    """The composition of modules, applied in the order given."""

    def __init__(self, *modules: Module):
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: argument {i} is not a Module: {module!r}")
        self.layers = list(modules)

    def named_children(self):
        return ((str(i), module) for i, module in enumerate(self.layers))

    def forward(self, x):
        """Each module in order, applied to the previous one's output."""
        for layer in self.layers:
            x = layer(x)
        return x

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)


class Activation(Module):
    """An elementwise function without parameters; subclasses name the engine op."""

    function = None

    def forward(self, x) -> Tensor:
        return self.function(x)


class ReLU(Activation):
    """max(x, 0): one ``relu`` node on its input, whatever made it."""
    function = staticmethod(relu)


class Tanh(Activation):
    """tanh(x)."""
    function = staticmethod(tanh)


class Sigmoid(Activation):
    """σ(x) = 1 / (1 + e^(-x))."""
    function = staticmethod(sigmoid)


class Softplus(Activation):
    """log(1 + e^x)."""
    function = staticmethod(softplus)


ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "softplus": Softplus}


def activation_class(name: str, owner: str) -> type[Activation]:
    """The activation module class called ``name`` (a key of ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"{owner}: unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(Sequential):
    """Linear layers of the given widths with an activation between each two of them.

    ``MLP([784, 400, 20])`` is Linear(784, 400), ReLU, Linear(400, 20); ``final_activation`` (a
    name, or None) follows the last layer. Its forward computes each Linear followed by a ReLU as one
    call of ``functions.linear_relu`` (one fused node on the fast kernels; the layer's output before its
    ReLU is then no tensor of the graph); calling the layers one by one (``mlp[0](x)``) gives each its node.
    """

    def __init__(self, widths, activation: str = "relu", final_activation: str | None = None, rng=None,
                 dtype=np.float32):
        widths = list(widths)
        if len(widths) < 2 or not all(is_positive_int(w) for w in widths):
            raise ValueError(f"MLP: widths must be at least two positive ints (input, ..., output), got {widths}")
        hidden_activation = activation_class(activation, "MLP")
        output_activation = None if final_activation is None else activation_class(final_activation, "MLP")
        dtype, rng = float_dtype(dtype, "MLP"), as_generator(rng, "MLP")
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(Linear(fan_in, fan_out, rng=rng, dtype=dtype))
            follower = output_activation if i == len(widths) - 2 else hidden_activation
            if follower is not None:
                layers.append(follower())
        super().__init__(*layers)
        self.widths = widths

    def forward(self, x):
        """Each layer in order; a Linear and the ReLU after it as one ``functions.linear_relu``."""
        layers, i = self.layers, 0
        while i < len(layers):
            layer = layers[i]
            if type(layer) is Linear and layer.bias is not None and i + 1 < len(layers) and \
                    type(layers[i + 1]) is ReLU:
                x = layer.fused_with_relu(x)
                i += 2
            else:
                x = layer(x)
                i += 1
        return x
