"""The Tensor: an ndarray, the op that produced it, and reverse-mode differentiation.

A tensor made by an op remembers the op, its parent tensors and the op's static parameters.
``backward`` walks that graph once in reverse topological order, asking each op for the
vector-Jacobian product of the gradient flowing into it with respect to each parent, and adds the
results into the ``.grad`` of the leaves that require a gradient.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .graph import topological_order

_grad_enabled = True


def is_grad_enabled() -> bool:
    """Whether ops record the graph (False inside ``no_grad``)."""
    return _grad_enabled


class no_grad(contextlib.ContextDecorator):
    """Context manager and decorator: ops inside it record no graph, as in ``torch.no_grad``."""

    def __init__(self):
        self._previous = []  # a stack, so that one instance can be entered again while inside it

    def __enter__(self):
        global _grad_enabled
        self._previous.append(_grad_enabled)
        _grad_enabled = False
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._previous.pop()
        return False


class Tensor:
    """An n-d array that can record the ops applied to it and differentiate through them.

    ``data`` is the ndarray; ``grad`` is None until ``backward`` reaches this tensor, then an
    ndarray of the same shape and dtype. ``op``, ``parents`` and ``params`` describe the op that
    produced the tensor (``op`` is None for a leaf).
    """

    __slots__ = ("data", "grad", "requires_grad", "op", "parents", "params", "name")
    __array_priority__ = 1000  # so that ndarray <op> Tensor defers to Tensor's reflected op

    def __init__(self, data, requires_grad: bool = False, name: str | None = None):
        if isinstance(data, Tensor):
            data = data.data
        self.data = np.asarray(data)
        if requires_grad and not np.issubdtype(self.data.dtype, np.floating):
            raise TypeError(f"Tensor: only floating-point tensors can require grad, got dtype {self.data.dtype}")
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.op = None
        self.parents = ()
        self.params = {}
        self.name = name

    @classmethod
    def from_op(cls, data: np.ndarray, op, parents: tuple, params: dict) -> "Tensor":
        """The result of ``op``: it records its parents only when some parent requires grad."""
        out = cls(data)
        if _grad_enabled and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out.op, out.parents, out.params = op, parents, params
        return out

    # ----------------------------------------------------------------- array-like attributes
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    def __len__(self) -> int:
        return len(self.data)

    def numpy(self) -> np.ndarray:
        """The underlying ndarray (not a copy)."""
        return self.data

    def item(self):
        """The value of a one-element tensor as a Python number."""
        return self.data.item()

    def __repr__(self) -> str:
        origin = f"op={self.op.name}" if self.op is not None else "leaf"
        grad = ", requires_grad=True" if self.requires_grad else ""
        name = f", name={self.name!r}" if self.name else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, {origin}{grad}{name})"

    # ----------------------------------------------------------------- autodiff
    def detach(self) -> "Tensor":
        """A leaf tensor sharing this tensor's data, cut from the graph."""
        return Tensor(self.data)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        """Set ``requires_grad`` in place (leaves only) and return self."""
        if self.op is not None:
            raise ValueError("requires_grad_: only a leaf tensor's flag can be set; use detach() first")
        if requires_grad and not np.issubdtype(self.dtype, np.floating):
            raise TypeError(f"requires_grad_: only floating-point tensors can require grad, got dtype {self.dtype}")
        self.requires_grad = requires_grad
        return self

    def zero_grad(self) -> None:
        """Forget the accumulated gradient."""
        self.grad = None

    def backward(self, grad=None) -> None:
        """Accumulate d(self)/d(leaf) · grad into ``leaf.grad`` for every leaf requiring grad.

        ``grad`` is the seed of the vector-Jacobian products: 1 by default for a one-element
        tensor, required otherwise, and of this tensor's shape.
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad (no input requires grad, "
                               "or it was computed under no_grad)")
        if grad is None:
            if self.size != 1:
                raise RuntimeError(f"backward: a seed gradient is needed for a non-scalar tensor of shape "
                                   f"{self.shape}; call backward(grad) with an array of that shape")
            grad = np.ones_like(self.data)
        grad = np.array(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)  # a copy: ours to hand out
        if grad.shape != self.shape:
            raise ValueError(f"backward: seed gradient of shape {grad.shape} for a tensor of shape {self.shape}")

        grads = {id(self): grad}
        handed_out = set()
        for node in reversed(topological_order(self)):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node.op is None:
                if node.grad is None:
                    # A leaf owns its gradient: an ndarray (not a NumPy scalar), never a read-only view,
                    # nor an array shared with another leaf.
                    if not isinstance(g, np.ndarray) or id(g) in handed_out or not g.flags.owndata \
                            or not g.flags.writeable:
                        g = np.array(g)
                    handed_out.add(id(g))
                    node.grad = g
                else:
                    node.grad = np.asarray(node.grad + g)
                continue
            arrays = [p.data for p in node.parents]
            for i, parent in enumerate(node.parents):
                if not parent.requires_grad:
                    continue
                pg = node.op.vjp(i, g, node.data, arrays, node.params)
                if pg.shape != parent.shape:
                    pg = unbroadcast(pg, parent.shape, f"{node.op.name} (argument {i})")
                previous = grads.get(id(parent))
                grads[id(parent)] = pg if previous is None else previous + pg
            node.op.vjps_done(node.params)

    # ----------------------------------------------------------------- operators and methods
    def __add__(self, other): return _ops.add(self, other)
    def __radd__(self, other): return _ops.add(other, self)
    def __sub__(self, other): return _ops.sub(self, other)
    def __rsub__(self, other): return _ops.sub(other, self)
    def __mul__(self, other): return _ops.mul(self, other)
    def __rmul__(self, other): return _ops.mul(other, self)
    def __truediv__(self, other): return _ops.div(self, other)
    def __rtruediv__(self, other): return _ops.div(other, self)
    def __pow__(self, other): return _ops.pow(self, other)
    def __rpow__(self, other): return _ops.pow(other, self)
    def __matmul__(self, other): return _ops.matmul(self, other)
    def __rmatmul__(self, other): return _ops.matmul(other, self)
    def __neg__(self): return _ops.neg(self)
    def __getitem__(self, index): return _ops.getitem(self, index)

    def exp(self): return _ops.exp(self)
    def log(self): return _ops.log(self)
    def log1p(self): return _ops.log1p(self)
    def sqrt(self): return _ops.sqrt(self)
    def abs(self): return _ops.abs(self)
    def relu(self): return _ops.relu(self)
    def tanh(self): return _ops.tanh(self)
    def sigmoid(self): return _ops.sigmoid(self)
    def softplus(self): return _ops.softplus(self)
    def log_sigmoid(self): return _ops.log_sigmoid(self)
    def sum(self, axis=None, keepdims=False): return _ops.sum(self, axis=axis, keepdims=keepdims)
    def mean(self, axis=None, keepdims=False): return _ops.mean(self, axis=axis, keepdims=keepdims)
    def max(self, axis=None, keepdims=False): return _ops.max(self, axis=axis, keepdims=keepdims)
    def logsumexp(self, axis=None, keepdims=False): return _ops.logsumexp(self, axis=axis, keepdims=keepdims)
    def transpose(self, *axes): return _ops.transpose(self, axes=axes[0] if len(axes) == 1 else (axes or None))

    def reshape(self, *shape):
        return _ops.reshape(self, shape=shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)

    @property
    def T(self):
        return _ops.transpose(self)


def unbroadcast(grad: np.ndarray, shape: tuple, where: str = "unbroadcast") -> np.ndarray:
    """Sum ``grad`` over the axes that broadcasting added or stretched to reach it from ``shape``."""
    extra = grad.ndim - len(shape)
    if extra < 0 or any(n != 1 and n != m for n, m in zip(shape, grad.shape[extra:])):
        raise RuntimeError(f"{where}: a gradient of shape {grad.shape} cannot belong to a tensor of shape {shape}")
    axes = tuple(range(extra)) + tuple(i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


from . import ops as _ops  # noqa: E402  (the ops need Tensor defined first)
