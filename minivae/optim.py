"""Gradient-descent optimizers that update parameter arrays in place.

Each optimizer keeps, per parameter, a step count and its buffers (Adam's moments, SGD's
velocity), and saves them with its hyper-parameters in a flat ``dict[str, np.ndarray]``:
``"step"`` (one count per parameter), one 0-d array per hyper-parameter, and ``"<buffer>.<i>"``
for parameter ``i``, so the dict can be written to an ``.npz`` file as it is.

The per-parameter updates, ``adam_update`` and ``sgd_update``, are plain functions of ndarrays
that work in place and keep every dtype. ``adam_update`` is written in the textbook form of Kingma
& Ba, Algorithm 1 — its reference — and runs a compiled kernel beneath it
(``minivae.kernels.adam``: one pass over the arrays) while the "numba" backend is on.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np


from .engine import Tensor
from .kernels import adam, backend


def adam_update(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay=0.0) -> None:
    """Update ``param`` and its moments ``m``, ``v`` in place by Adam step number ``step`` (from 1).

        g ← ∇ + λ·θ,   m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²,
        θ ← θ − lr · m̂ / (√v̂ + ε),   m̂ = m / (1 − β₁ᵗ),   v̂ = v / (1 − β₂ᵗ)   (Kingma & Ba, Algorithm 1)

    The four arrays share one shape and one float dtype; float32 is updated in float32
    arithmetic. (1 − β₂)·g is multiplied by g, not (1 − β₂) by g², and √v̂ is taken as √v / √(1 − β₂ᵗ):
    g² and v̂ overflow float32 for |g| > 1.8e19 where v does not, and an infinite v would freeze the
    parameter for good. ``grad`` may be a Tensor (as after ``backward(create_graph=True)``): its
    value is used. Raises ValueError for arrays that differ in shape or dtype, a read-only
    ``param``, ``m`` or ``v``, or a step below 1.
    """
    grad = _gradient_array(grad)
    _check_writeable("adam_update", param=param, m=m, v=v)
    if not (param.shape == grad.shape == m.shape == v.shape and param.dtype == grad.dtype == m.dtype == v.dtype):
        described = ", ".join(f"{name} {a.shape} {a.dtype}" for name, a in zip(("param", "grad", "m", "v"),
                                                                               (param, grad, m, v)))
        raise ValueError(f"adam_update: param, grad, m and v need one shape and dtype, got {described}")
    if param.dtype.kind != "f":
        raise TypeError(f"adam_update: param must be floating-point, got dtype {param.dtype}")
    if step < 1:
        raise ValueError(f"adam_update: step counts from 1, got {step}")
    if backend.active() == "numba" and all(a.flags.c_contiguous for a in (param, grad, m, v)):
        scalars = adam.folded_scalars(param.dtype, step, lr, beta1, beta2, eps, weight_decay)
        adam.adam_step(param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1), *scalars)
        return
    if weight_decay:
        grad = grad + weight_decay * param
    m *= beta1
    m += (1 - beta1) * grad
    v *= beta2
    v += ((1 - beta2) * grad) * grad
    sqrt_v_hat = np.sqrt(v, out=np.empty_like(v))  # an array even for a 0-d parameter
    sqrt_v_hat /= math.sqrt(1 - beta2 ** step)  # √v̂ from √v: v̂ itself can overflow float32
    sqrt_v_hat += eps
    np.divide(m, sqrt_v_hat, out=sqrt_v_hat)    # m / (√v̂ + ε), then times lr / (1 - β₁ᵗ): lr · m̂ / (√v̂ + ε)
    sqrt_v_hat *= lr / (1 - beta1 ** step)
    param -= sqrt_v_hat


def sgd_update(param, grad, velocity, lr, momentum, weight_decay) -> None:
    """One step of SGD with momentum on one parameter, in place on ``param`` and ``velocity``.

    g ← grad + weight_decay·θ;  b ← μ·b + g;  θ ← θ − α·b  (b starts at 0, so b₁ = g₁).
    ``grad`` may be a Tensor (its value is used); a read-only ``param`` or ``velocity`` is a ValueError.
    """
    grad = _gradient_array(grad)
    _check_writeable("sgd_update", param=param, velocity=velocity)
    if weight_decay != 0.0:
        grad = grad + weight_decay * param
    velocity *= momentum
    velocity += grad
    param -= lr * velocity


def _gradient_array(grad) -> np.ndarray:
    """A gradient's value as an ndarray: after ``backward(create_graph=True)`` it is a Tensor, and a step
    uses its value (as ``torch.optim`` does), never its graph."""
    return np.asarray(grad.data if isinstance(grad, Tensor) else grad)


def _check_writeable(owner: str, **arrays) -> None:
    """A one-line ValueError naming the first of ``arrays`` that cannot be updated in place."""
    for name, array in arrays.items():
        if not array.flags.writeable:
            raise ValueError(f"{owner}: {name} is read-only, and the update works in place; give it a writeable "
                             f"copy first (p.data = p.data.copy())")


class Optimizer:
    """The common machinery: the parameter list, step counts, buffers and (de)serialization.

    A subclass names its ``hyperparameters`` and its per-parameter ``buffers``, checks the
    hyper-parameters in ``check_hyperparameters`` and updates one parameter in ``update``.
    """

    hyperparameters: tuple[str, ...] = ()
    buffers: tuple[str, ...] = ()

    def __init__(self, params, **hyperparameters):
        name = type(self).__name__
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{name}: the parameter list is empty")
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor) or not p.requires_grad or p.op is not None:
                raise TypeError(f"{name}: parameter {i} must be a leaf Tensor that requires grad, got {p!r}")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError(f"{name}: a parameter appears more than once in the list")
        self.set_hyperparameters(**hyperparameters)
        self.steps = np.zeros(len(self.params), np.int64)
        self.state = {buffer: [np.zeros_like(p.data) for p in self.params] for buffer in self.buffers}

    def set_hyperparameters(self, **values) -> None:
        """Check and set the hyper-parameters (all of them, by keyword)."""
        if values.keys() != set(self.hyperparameters):
            raise TypeError(f"{type(self).__name__}: hyper-parameters {sorted(values)} given, "
                            f"{list(self.hyperparameters)} expected")
        values = {key: float(value) for key, value in values.items()}
        self.check_hyperparameters(**values)
        for key, value in values.items():
            setattr(self, key, value)

    def check_hyperparameters(self, **values) -> None:
        raise NotImplementedError

    def update(self, i: int, param: np.ndarray, grad: np.ndarray) -> None:
        """Update parameter ``i`` (its array, in place), whose step count is already incremented."""
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Forget every parameter's gradient."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient; the others, and their state, stay as they are.

        A gradient that is a Tensor (after ``backward(create_graph=True)``) steps on its value. Raises
        ValueError, before anything changes, when a parameter to update has a read-only array.
        """
        for i, p in enumerate(self.params):
            if p.grad is not None:
                _check_writeable(f"{type(self).__name__}.step", **{f"parameter {i}": p.data})
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            self.steps[i] += 1
            self.update(i, p.data, _gradient_array(p.grad))

    # ----------------------------------------------------------------- saving and loading
    def state_dict(self) -> dict[str, np.ndarray]:
        """A flat copy of the state: "step", the hyper-parameters, and "<buffer>.<i>" arrays."""
        state = {"step": self.steps.copy()}
        state.update({key: np.asarray(getattr(self, key), np.float64) for key in self.hyperparameters})
        state.update({f"{buffer}.{i}": array.copy()
                      for buffer, arrays in self.state.items() for i, array in enumerate(arrays)})
        return state

    def load_state_dict(self, state: Mapping) -> None:
        """Restore a ``state_dict`` of an optimizer of the same kind over parameters of the same shapes.

        Everything is checked before anything changes; the buffers are copied in place.
        """
        name = f"{type(self).__name__}.load_state_dict"
        expected = {"step", *self.hyperparameters,
                    *(f"{buffer}.{i}" for buffer in self.buffers for i in range(len(self.params)))}
        missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
        if missing or unexpected:
            raise KeyError(f"{name}: missing keys {missing}, unexpected keys {unexpected}")
        steps = np.asarray(state["step"])
        if steps.shape != self.steps.shape or not np.issubdtype(steps.dtype, np.integer) or (steps < 0).any():
            raise ValueError(f"{name}: 'step' must hold {len(self.params)} non-negative ints, got {steps!r}")
        hyper = {}
        for key in self.hyperparameters:
            value = np.asarray(state[key])
            if value.shape != ():
                raise ValueError(f"{name}: {key!r} must be a scalar, got an array of shape {value.shape}")
            hyper[key] = value.item()
        for buffer, arrays in self.state.items():
            for i, array in enumerate(arrays):
                saved = np.asarray(state[f"{buffer}.{i}"])
                if saved.shape != array.shape or saved.dtype != array.dtype:
                    raise ValueError(f"{name}: '{buffer}.{i}' has shape {saved.shape} and dtype {saved.dtype}, "
                                     f"parameter {i} needs shape {array.shape} and dtype {array.dtype}")
        self.set_hyperparameters(**hyper)
        self.steps[:] = steps
        for buffer, arrays in self.state.items():
            for i, array in enumerate(arrays):
                np.copyto(array, state[f"{buffer}.{i}"])


class Adam(Optimizer):
    """Adam with bias-corrected moment estimates (Kingma & Ba, Algorithm 1).

    ``weight_decay`` adds weight_decay·θ to the gradient, as ``torch.optim.Adam`` does.
    """

    hyperparameters = ("lr", "beta1", "beta2", "eps", "weight_decay")
    buffers = ("m", "v")

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        if len(betas) != 2:
            raise ValueError(f"Adam: betas must be a pair (beta1, beta2), got {betas!r}")
        super().__init__(params, lr=lr, beta1=betas[0], beta2=betas[1], eps=eps, weight_decay=weight_decay)

    @property
    def betas(self) -> tuple[float, float]:
        return self.beta1, self.beta2

    def check_hyperparameters(self, lr, beta1, beta2, eps, weight_decay) -> None:
        for key, value in (("lr", lr), ("eps", eps), ("weight_decay", weight_decay)):
            if not value >= 0.0:
                raise ValueError(f"Adam: {key} must be >= 0, got {value}")
        for key, value in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"Adam: {key} must be in [0, 1), got {value}")

    def update(self, i, param, grad) -> None:
        adam_update(param, grad, self.state["m"][i], self.state["v"][i], int(self.steps[i]),
                    self.lr, self.beta1, self.beta2, self.eps, self.weight_decay)


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (heavy-ball) momentum and weight decay."""

    hyperparameters = ("lr", "momentum", "weight_decay")
    buffers = ("velocity",)

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def check_hyperparameters(self, lr, momentum, weight_decay) -> None:
        for key, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            if not value >= 0.0:
                raise ValueError(f"SGD: {key} must be >= 0, got {value}")

    def update(self, i, param, grad) -> None:
        sgd_update(param, grad, self.state["velocity"][i], self.lr, self.momentum, self.weight_decay)
