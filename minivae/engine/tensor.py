"""The Tensor: an ndarray, the op that produced it, and reverse-mode differentiation.

A tensor made by an op remembers the op, its parent tensors, the op's static parameters and what
the op's forward saved for its backward. ``backward`` walks that graph once in reverse topological
order; at each node it asks the op for the gradients of all its tensor arguments at once (the
op's backward, see ``ops.py``), sums what reaches each tensor, and leaves the result in the
``.grad`` of the leaves that require a gradient.

With ``create_graph=True`` the same walk runs on Tensors instead of arrays: every op of every
backward records a graph, so the gradients it leaves can be differentiated again.

Tensor's operators and methods are written in its class body and each calls one op of ``ops.py``
(imported at the end of this file, so that ``ops.py`` can build on ``Tensor``). This file also owns
two rules every op follows: float32 sums accumulate in float64 (``accumulator``, ``accumulated``),
and a gradient of a broadcast shape is summed back to its argument's shape (``unbroadcast``).
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from .graph import topological_order


# ---------------------------------------------------------------------------- gradient mode
class _GradMode(threading.local):
    """Whether ops record the graph, per thread (a new thread starts with recording on)."""
    enabled = True


_mode = _GradMode()


class _ForwardRecording(threading.local):
    """The op applications recorded in this thread while ``record_forward`` is on (None: off)."""
    applications = None


_forward = _ForwardRecording()


class _WalkCount(threading.local):
    """How many backward walks (``backpropagate``) this thread has begun."""
    count = 0


_walks = _WalkCount()


def walks_begun() -> int:
    """How many backward walks this thread has begun: the captured step refuses a loss that runs one."""
    return _walks.count


@contextlib.contextmanager
def record_forward():
    """Within the block, every op applied to a Tensor in this thread is noted, in the order applied, as
    ``(result, op, parents, static, saved)`` in the list it yields, also where no parent requires grad
    or recording is off: the captured step replays these."""
    previous, _forward.applications = _forward.applications, []
    try:
        yield _forward.applications
    finally:
        _forward.applications = previous


def is_grad_enabled() -> bool:
    """Whether ops record the graph in this thread (False inside ``no_grad``)."""
    return _mode.enabled


class set_grad_enabled:
    """Switch graph recording on or off for this thread, as ``torch.set_grad_enabled``.

    Called, it switches at once; used as ``with set_grad_enabled(mode):``, it restores the previous
    mode at the end of the block.
    """

    def __init__(self, mode: bool):
        self.previous = _mode.enabled
        _mode.enabled = bool(mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _mode.enabled = self.previous
        return False


class _GradModeBlock(contextlib.ContextDecorator):
    """A context manager and decorator that sets the gradient mode of the thread that enters it."""

    mode = None

    def __init__(self):
        self._entered = threading.local()  # one stack of previous modes per thread: instances may be shared

    def __enter__(self):
        stack = self._entered.__dict__.setdefault("stack", [])
        stack.append(_mode.enabled)
        _mode.enabled = self.mode
        return self

    def __exit__(self, *exc):
        _mode.enabled = self._entered.stack.pop()
        return False


class no_grad(_GradModeBlock):
    """Ops inside it record no graph, in this thread, as ``torch.no_grad``; also a decorator."""
    mode = False


class enable_grad(_GradModeBlock):
    """Ops inside it record the graph again, in this thread, as ``torch.enable_grad``; also a decorator."""
    mode = True


# ---------------------------------------------------------------------------- the tensor
class Tensor:
    """An n-d array that can record the ops applied to it and differentiate through them.

    ``data`` is the ndarray; ``grad`` is None until ``backward`` reaches this tensor, then an
    ndarray of the same shape and dtype (a Tensor after ``backward(create_graph=True)``).
    ``op``, ``parents``, ``static`` (the op's static parameters) and ``saved`` (what the op's
    forward kept for its backward) describe the op that produced the tensor; ``op`` is None for
    a leaf.
    """

    __slots__ = ("data", "grad", "requires_grad", "op", "parents", "static", "saved", "name", "_hooks",
                 "_retains_grad")
    __array_priority__ = 1000  # so that ndarray <op> Tensor defers to Tensor's reflected op

    def __init__(self, data, requires_grad: bool = False, name: str | None = None):
        if isinstance(data, Tensor):
            data = data.data
        self.data = np.asarray(data)
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"Tensor: only floating-point tensors can require grad, got dtype {self.data.dtype}")
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.op = None
        self.parents = ()
        self.static = {}
        self.saved = None
        self.name = name
        self._hooks = None
        self._retains_grad = False

    @classmethod
    def from_op(cls, data: np.ndarray, op, parents: tuple, static: dict, saved=None) -> Tensor:
        """The result of ``op``: it records its parents only when some parent requires grad (and never for a
        result that is not floating-point, such as a comparison's booleans, which has no gradient)."""
        out = cls(data)
        if _mode.enabled and data.dtype.kind == "f" and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out.op, out.parents, out.static, out.saved = op, parents, static, saved
        if _forward.applications is not None:
            _forward.applications.append((out, op, parents, static, saved))
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

    @property
    def is_leaf(self) -> bool:
        """True for a tensor no recorded op produced (inputs, parameters, constants)."""
        return self.op is None

    def __len__(self) -> int:
        return len(self.data)

    def numpy(self) -> np.ndarray:
        """The underlying ndarray (not a copy)."""
        return self.data

    def __array__(self, dtype=None, copy=None):
        """``np.asarray(t)`` is the tensor's data: NumPy functions applied to a Tensor see its array
        and record no graph (inside a backward that ``create_graph`` records, the engine notes it: see
        ``_note_leaving_the_graph``)."""
        _note_leaving_the_graph(self, "turned a Tensor that requires grad into an ndarray (np.asarray, or a NumPy "
                                      "function such as np.abs)")
        if copy:
            return np.array(self.data, dtype=dtype)
        return self.data if dtype is None else self.data.astype(dtype, copy=False)

    def __array_function__(self, function, types, args, kwargs):
        """A NumPy function (``np.sum``, ``np.max``, ``np.concatenate``...) applied to Tensors is applied to
        their arrays, as ``__array__`` promises: it returns what it returns for ndarrays, with no graph
        (the engine's own functions, ``mv.sum`` or ``t.sum()``, are the differentiable ones)."""
        if function not in (np.shape, np.ndim, np.size):
            _note_leaving_the_graph(self, f"passed a Tensor that requires grad to np.{function.__name__}")
        return function(*_arrays_of(args), **_arrays_of(kwargs))

    def item(self):
        """The value of a one-element tensor as a Python number."""
        _note_leaving_the_graph(self, "turned a Tensor that requires grad into a Python number (.item())")
        return self.data.item()

    def __float__(self) -> float:
        return float(self._one_element("float"))

    def __int__(self) -> int:
        return int(self._one_element("int"))

    def __bool__(self) -> bool:
        return bool(self._one_element("bool"))

    def _one_element(self, kind: str):
        _note_leaving_the_graph(self, f"turned a Tensor that requires grad into a Python number ({kind}())")
        if self.data.size != 1:
            raise TypeError(f"{kind}(): only a one-element tensor converts to a Python {kind}, "
                            f"this one has shape {self.shape}")
        return self.data.item()

    __hash__ = object.__hash__  # == compares elementwise, so hashing stays by identity

    # ----------------------------------------------------------------- operators (each one op of ops.py)
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

    # comparisons: boolean Tensors that record no graph
    def __lt__(self, other): return _ops.less(self, other)
    def __le__(self, other): return _ops.less_equal(self, other)
    def __gt__(self, other): return _ops.greater(self, other)
    def __ge__(self, other): return _ops.greater_equal(self, other)
    def __eq__(self, other): return _ops.equal(self, other)  # type: ignore[override]
    def __ne__(self, other): return _ops.not_equal(self, other)  # type: ignore[override]

    # ----------------------------------------------------------------- methods (each one function of ops.py)
    def exp(self) -> Tensor: return _ops.exp(self)
    def log(self) -> Tensor: return _ops.log(self)
    def log1p(self) -> Tensor: return _ops.log1p(self)
    def sqrt(self) -> Tensor: return _ops.sqrt(self)
    def abs(self) -> Tensor: return _ops.abs(self)
    def relu(self) -> Tensor: return _ops.relu(self)
    def tanh(self) -> Tensor: return _ops.tanh(self)
    def sigmoid(self) -> Tensor: return _ops.sigmoid(self)
    def softplus(self) -> Tensor: return _ops.softplus(self)
    def log_sigmoid(self) -> Tensor: return _ops.log_sigmoid(self)

    def sum(self, axis=None, keepdims: bool = False) -> Tensor:
        return _ops.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims: bool = False) -> Tensor:
        return _ops.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims: bool = False) -> Tensor:
        return _ops.max(self, axis=axis, keepdims=keepdims)

    def logsumexp(self, axis=None, keepdims: bool = False) -> Tensor:
        return _ops.logsumexp(self, axis=axis, keepdims=keepdims)

    def softmax(self, axis: int = -1) -> Tensor:
        return _ops.softmax(self, axis=axis)

    def log_softmax(self, axis: int = -1) -> Tensor:
        return _ops.log_softmax(self, axis=axis)

    def transpose(self, *axes) -> Tensor:
        """``t.transpose()`` reverses the axes; ``t.transpose(1, 0, 2)`` or ``t.transpose((1, 0, 2))`` permutes them."""
        return _ops.transpose(self, axes=axes[0] if len(axes) == 1 else (axes or None))

    def reshape(self, *shape) -> Tensor:
        """``t.reshape(2, 3)`` or ``t.reshape((2, 3))``; one side may be -1."""
        return _ops.reshape(self, shape=shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)

    @property
    def T(self) -> Tensor:  # noqa: N802  (the array name)
        """The tensor with its axes reversed."""
        return _ops.transpose(self)

    def __repr__(self) -> str:
        origin = f"op={self.op.name}" if self.op is not None else "leaf"
        grad = ", requires_grad=True" if self.requires_grad else ""
        name = f", name={self.name!r}" if self.name else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, {origin}{grad}{name})"

    # ----------------------------------------------------------------- autodiff
    def detach(self) -> Tensor:
        """A leaf tensor sharing this tensor's data, cut from the graph."""
        return Tensor(self.data)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` in place (leaves only) and return self."""
        if self.op is not None:
            raise ValueError("requires_grad_: only a leaf tensor's flag can be set; use detach() first")
        if requires_grad and self.dtype.kind != "f":
            raise TypeError(f"requires_grad_: only floating-point tensors can require grad, got dtype {self.dtype}")
        self.requires_grad = requires_grad
        return self

    def zero_grad(self) -> None:
        """Forget the accumulated gradient."""
        self.grad = None

    def retain_grad(self) -> Tensor:
        """Keep this tensor's gradient in ``.grad`` at the next ``backward``, even if it is not a leaf."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad: this tensor does not require grad, so no gradient reaches it")
        self._retains_grad = True
        return self

    def register_hook(self, hook):
        """Call ``hook(grad)`` with the gradient flowing into this tensor during every backward pass.

        ``grad`` is the tensor's whole gradient (every path summed), an ndarray (a Tensor under
        ``create_graph``); a hook that returns a value replaces the gradient with it (same shape),
        for the tensors below. Returns a handle whose ``remove()`` unregisters the hook.
        """
        if not self.requires_grad:
            raise RuntimeError("register_hook: this tensor does not require grad, so no gradient reaches it")
        if not callable(hook):
            raise TypeError(f"register_hook: expected a callable, got {type(hook).__name__}")
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(hook)
        return _HookHandle(self._hooks, hook)

    def backward(self, grad=None, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) · grad into ``leaf.grad`` for every leaf requiring grad.

        ``grad`` is the seed of the vector-Jacobian products: 1 by default for a one-element
        tensor, required otherwise, and of this tensor's shape. With ``create_graph`` the backward
        pass is itself recorded and the gradients left in ``.grad`` are Tensors that can be
        differentiated again; without it, they are plain ndarrays and nothing is recorded.
        Tensors that called ``retain_grad`` also keep their gradient.

        The graph keeps what its ops' backwards need, as PyTorch's ``retain_graph=True`` does, so a
        second backward on the same graph is allowed and adds the same gradients again (``.grad``
        accumulates; call ``zero_grad`` or set ``.grad = None`` in between to start afresh).

        Raises RuntimeError when this tensor does not require grad, or when no seed is given for a
        tensor of more than one element; ValueError for a seed of the wrong shape.
        """
        seed = self._seed(grad, "backward")
        handed_out = set()

        def keep(node, g):
            if node.op is not None and not node._retains_grad:
                return
            if create_graph:
                node.grad = g if node.grad is None else _as_tensor(node.grad) + g
            elif node.grad is None:
                # A leaf owns its gradient: an ndarray (not a NumPy scalar), never a read-only view,
                # nor an array shared with another tensor.
                if not isinstance(g, np.ndarray) or id(g) in handed_out or not g.flags.owndata \
                        or not g.flags.writeable:
                    g = np.array(g)
                handed_out.add(id(g))
                node.grad = g
            else:
                node.grad = np.asarray(node.grad + (g.data if isinstance(g, Tensor) else g))

        backpropagate(self, seed, create_graph, keep)

    def _seed(self, grad, where: str, keep_tensor: bool = False):
        """The seed gradient for a walk from this tensor, checked, as an ndarray of its shape and dtype
        (with ``keep_tensor``, a Tensor seed is kept as it is, in its graph)."""
        if not self.requires_grad:
            raise RuntimeError(f"{where}: this tensor does not require grad (no input requires grad, "
                               "or it was computed under no_grad)")
        if grad is None:
            if self.size != 1:
                raise RuntimeError(f"{where}: a seed gradient is needed for a non-scalar tensor of shape "
                                   f"{self.shape}; call backward(grad) with an array of that shape")
            return np.ones_like(self.data)
        if keep_tensor and isinstance(grad, Tensor):
            if grad.shape != self.shape or grad.dtype != self.dtype:
                raise ValueError(f"{where}: seed gradient of shape {grad.shape} and dtype {grad.dtype} for a tensor "
                                 f"of shape {self.shape} and dtype {self.dtype}")
            return grad
        seed = np.array(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)  # a copy: ours
        if seed.shape != self.shape:
            raise ValueError(f"{where}: seed gradient of shape {seed.shape} for a tensor of shape {self.shape}")
        return seed


class _HookHandle:
    """What ``register_hook`` returns: ``remove()`` takes the hook off its tensor."""

    def __init__(self, hooks: list, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


class BackwardContext:
    """What an op's backward receives besides the output gradient.

    ``inputs`` (the op's tensor arguments), ``ans`` (its output) and ``saved`` (what its forward
    kept) are ndarrays in a plain backward pass and Tensors of the graph under ``create_graph``
    (``saved`` stays as the forward left it); ``needs_grad[i]`` says whether input i wants a
    gradient (the backward may return None for the others). The op's static parameters are
    attributes too (``ctx.axis``, ...), and all of them together ``ctx.static``.

    ``out[i]``, when not None, is an array of input i's shape and dtype into which the backward may
    write input i's gradient (and return that array): the captured step passes its flat gradient
    buffer's views here to an op that declares ``writes_out``. The walk passes no ``out``.
    """

    def __init__(self, inputs: tuple, ans, saved, static: dict, needs_grad: tuple, out: tuple | None = None):
        self.inputs, self.ans, self.saved, self.static, self.needs_grad = inputs, ans, saved, static, needs_grad
        self.out = out if out is not None else (None,) * len(inputs)
        self.__dict__.update(static)

    @classmethod
    def of(cls, node: Tensor, create_graph: bool) -> BackwardContext:
        """The context of the walk at ``node``: Tensors under ``create_graph``, arrays otherwise."""
        inputs, ans = (node.parents, node) if create_graph else (tuple(p.data for p in node.parents), node.data)
        return cls(inputs, ans, node.saved, node.static, tuple(p.requires_grad for p in node.parents))


class Visit:
    """What the walk did at one tensor, as a recorder of ``backpropagate`` receives it.

    ``node`` the tensor; ``grad`` its whole gradient (after its hooks ran: ``hooked``); ``ctx`` the
    context its op's backward received (None for a leaf); ``sends`` one ``(position, gradient, adds,
    unbroadcast)`` per argument that received a gradient, in the order the walk handed them on:
    ``adds`` when it was added to a gradient that had already reached that argument,
    ``unbroadcast`` when it was summed back to the argument's shape first (``gradient`` is the
    result).
    """

    __slots__ = ("node", "grad", "hooked", "ctx", "sends")

    def __init__(self, node, grad, hooked: bool, ctx, sends: list):
        self.node, self.grad, self.hooked, self.ctx, self.sends = node, grad, hooked, ctx, sends


def backpropagate(root: Tensor, seed, create_graph: bool, keep, targets=None, recorder=None) -> None:
    """The reverse-mode walk below ``root``, seeded with ``seed`` (root's shape).

    Visits every tensor that ``root`` depends on, children before parents, once its whole gradient
    is known: runs its hooks, calls ``keep(tensor, gradient)``, then asks its op for the gradients
    of its inputs and adds each to what already reached that input. Without ``create_graph`` the
    gradients are ndarrays and nothing is recorded; with it, they are Tensors and every op of
    every backward records its graph. With ``targets`` (tensors), only the part of the graph between
    them and ``root`` is walked: nothing below a target is visited unless it leads to another one.
    ``recorder``, when given, is called with a ``Visit`` after each tensor is visited: what the walk
    did there (the captured step replays these).
    """
    _walks.count += 1
    if create_graph:
        seed = _as_tensor(seed)
    order = topological_order(root)
    if targets is not None:
        order = _leading_to(order, {id(t) for t in targets})
    grads = {id(root): seed}
    with set_grad_enabled(create_graph):
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            hooked = bool(node._hooks)
            if hooked:
                g = _run_hooks(node, g, create_graph)
            keep(node, g)
            if node.op is None:
                if recorder is not None:
                    recorder(Visit(node, g, hooked, None, []))
                continue
            ctx, input_grads, left = _run_backward(node, g, create_graph)
            sends = []
            for i, (parent, pg) in enumerate(zip(node.parents, input_grads)):
                if pg is None or not parent.requires_grad:
                    continue
                pg = _checked_gradient(node, i, pg, g, create_graph, left)
                reduced = pg.shape != parent.shape
                if reduced:
                    pg = unbroadcast(pg, parent.shape, f"{node.op.name} (argument {i})")
                previous = grads.get(id(parent))
                grads[id(parent)] = pg if previous is None else previous + pg
                sends.append((i, pg, previous is not None, reduced))
            if recorder is not None:
                recorder(Visit(node, g, hooked, ctx, sends))


class _RecordedBackward(threading.local):
    """The op whose backward ``create_graph`` is recording in this thread (None outside one), and how it
    left the graph, if it did."""
    op = None
    left = None


_recorded_backward = _RecordedBackward()


def _run_backward(node: Tensor, g, create_graph: bool) -> tuple:
    """The context ``node``'s op's backward received, the gradients of ``node``'s inputs it returned,
    and, while ``create_graph`` records it, how that backward left the graph
    (``_note_leaving_the_graph``), or None."""
    ctx = BackwardContext.of(node, create_graph)
    if not create_graph:
        return ctx, node.op.backward(ctx, g), None
    outer = _recorded_backward.op, _recorded_backward.left
    _recorded_backward.op, _recorded_backward.left = node.op.name, None
    try:
        return ctx, node.op.backward(ctx, g), _recorded_backward.left
    finally:
        _recorded_backward.op, _recorded_backward.left = outer


def _note_leaving_the_graph(tensor: Tensor, how: str) -> None:
    """Inside a backward that ``create_graph`` records, note that a Tensor that requires grad became an
    array or a number: what is computed from it is a constant of the graph, so the gradient would
    not depend on the inputs through it, and a higher derivative would be silently wrong."""
    if _recorded_backward.op is not None and tensor.requires_grad and _recorded_backward.left is None:
        _recorded_backward.left = how


class _LeftTheGraph:
    """The op of a gradient that a recorded backward computed outside the graph: it has the right value,
    and differentiating it again is an error naming the op (PyTorch's once-differentiable functions
    behave so), where a derivative through it would be silently 0."""

    saves = False

    def __init__(self, op_name: str, how: str):
        self.name, self.op_name, self.how = f"{op_name}_backward", op_name, how

    def backward(self, ctx, g):
        raise RuntimeError(
            f"{self.op_name}: its backward {self.how} while create_graph recorded it, so its gradient does not "
            f"depend on the graph and cannot be differentiated again (that derivative would be silently wrong); "
            f"write the backward with the engine's ops (mv.abs, mv.exp, mv.where, ...), which take arrays and "
            f"Tensors alike, and minivae.engine.ops.value(x) for constants such as masks")

    vjp = backward


def _checked_gradient(node: Tensor, i: int, pg, g, create_graph: bool, left: str | None):
    """The gradient ``pg`` that ``node``'s backward returned for input ``i``: an ndarray, or under
    ``create_graph`` a Tensor of the graph, of the input's dtype.

    A gradient of another dtype is an error naming the op (the engine never casts silently, and a
    float64 gradient for a float32 leaf would only be refused later, by the optimizer). Under
    ``create_graph``, a gradient computed outside the graph — ``left`` says how the backward left it,
    or it is an ndarray, or a Tensor that does not depend on a seed ``g`` requiring grad, though a
    backward is linear in ``g`` — keeps its value but becomes a node whose differentiation is an
    error naming the op (``_LeftTheGraph``). (A zero gradient is no exception: a backward with
    none returns None.)
    """
    dtype = node.parents[i].dtype
    if pg.dtype != dtype:
        raise RuntimeError(f"{node.op.name}: its backward returned a {pg.dtype} gradient for argument {i}, which is "
                           f"{dtype}; a gradient has its argument's dtype (build it from g and ctx.inputs, which "
                           f"have that dtype, or cast it in the backward)")
    if not create_graph:
        return pg.data if isinstance(pg, Tensor) else pg
    if left is None and not isinstance(pg, Tensor):
        left = "returned an ndarray"
    elif left is None and isinstance(g, Tensor) and g.requires_grad and not pg.requires_grad:
        left = "returned a Tensor outside the graph"
    if left is None:
        return _as_tensor(pg)
    parents = tuple(t for t in (*node.parents, g) if isinstance(t, Tensor) and t.requires_grad)
    out = Tensor(pg.data if isinstance(pg, Tensor) else pg)
    if parents:
        out.requires_grad = True
        out.op, out.parents, out.static, out.saved = _LeftTheGraph(node.op.name, left), parents, {}, None
    return out


def _leading_to(order: list, targets: set) -> list:
    """The tensors of ``order`` (parents first) that are targets or have a path down to one."""
    leads = set()
    for node in order:
        if id(node) in targets or any(id(p) in leads for p in node.parents):
            leads.add(id(node))
    return [node for node in order if id(node) in leads]


def _run_hooks(node: Tensor, g, create_graph: bool):
    for hook in list(node._hooks):
        replaced = hook(g)
        if replaced is not None:
            replaced = _as_tensor(replaced) if create_graph else np.asarray(
                replaced.data if isinstance(replaced, Tensor) else replaced, dtype=node.dtype)
            if replaced.shape != node.shape:
                raise RuntimeError(f"register_hook: a hook returned a gradient of shape {replaced.shape} "
                                   f"for a tensor of shape {node.shape}")
            g = replaced
    return g


def _arrays_of(value):
    """``value`` with every Tensor in it (also inside lists, tuples and dicts) replaced by its array."""
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, list):
        return [_arrays_of(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_arrays_of(v) for v in value)
    if isinstance(value, dict):
        return {key: _arrays_of(v) for key, v in value.items()}
    return value


def _as_tensor(value) -> Tensor:
    """``value`` itself if it is a Tensor, else a new leaf Tensor holding it (not requiring grad)."""
    return value if isinstance(value, Tensor) else Tensor(value)


def accumulator(dtype: np.dtype):
    """The dtype a sum of ``dtype`` values accumulates in: float64 for float32 (and narrower) floats,
    None (the values' own dtype) otherwise."""
    return np.float64 if dtype.kind == "f" and dtype.itemsize < 8 else None


def accumulated(reduction, x: np.ndarray, axis, keepdims: bool) -> np.ndarray:
    """``reduction`` (np.sum or np.mean) of the array x, float32 accumulated in float64 and rounded
    once to float32: the rule of every sum the engine takes.

    Of a non-empty float array, the two steps np.sum and np.mean take are taken here directly:
    ``np.add.reduce`` (what np.sum calls) and, for a mean, the division of that sum by the count of
    values reduced (what np.mean does next), so the results are np.mean's bit for bit without its
    generic checks, which cost more than the arithmetic on the step's small arrays. Booleans and
    integers (whose mean is a float64 fraction) and empty arrays (whose mean is NaN, with NumPy's
    warning) take np.mean itself.
    """
    wide = accumulator(x.dtype)
    if reduction is np.mean and (x.dtype.kind != "f" or x.size == 0):
        out = np.mean(x, axis=axis, keepdims=keepdims, dtype=wide)
    else:
        out = np.add.reduce(x, axis=axis, dtype=wide, keepdims=keepdims)
        if reduction is np.mean:
            out = out / (x.size // out.size)
    return out if wide is None else out.astype(x.dtype, copy=False)


def unbroadcast(grad, shape: tuple, where: str = "unbroadcast"):
    """Sum ``grad`` over the axes that broadcasting added or stretched to reach it from ``shape``: the
    gradient of broadcasting, in ``shape``.

    An ndarray is summed here (``accumulated``); a Tensor goes through the ``sum_to`` op (whose
    forward is this function on its array), so that the sum is recorded. Raises RuntimeError, naming
    ``where``, when ``grad``'s shape cannot come from ``shape`` by broadcasting.
    """
    extra = grad.ndim - len(shape)
    if extra < 0 or any(n != 1 and n != m for n, m in zip(shape, grad.shape[extra:])):
        raise RuntimeError(f"{where}: a gradient of shape {grad.shape} cannot belong to a tensor of shape {shape}")
    if isinstance(grad, Tensor):
        return grad if grad.shape == tuple(shape) else _ops.sum_to(grad, shape=tuple(shape))
    axes = tuple(range(extra)) + tuple(i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)
    if axes:
        grad = accumulated(np.sum, grad, axes, True)
    return grad.reshape(shape)


from . import ops as _ops  # noqa: E402  (ops builds on Tensor; Tensor's methods call ops at run time)
