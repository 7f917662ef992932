"""Derivatives as functions, in the style of JAX and HIPS autograd: ``grad``, ``value_and_grad``,
``vjp``, ``jvp``, ``hvp``, ``jacobian`` and ``hessian``.

They are built on one walk, ``gradients(output, inputs)`` (the same walk as ``Tensor.backward``,
but returning the gradients of the given tensors instead of accumulating them into ``.grad``).
While graph recording is on, that walk records itself (``create_graph``), so every result can be
differentiated again: ``grad(grad(f))`` is the second derivative of f.

Arguments that are arrays, numbers or Tensors not requiring grad become fresh leaves requiring
grad; Tensors that already require grad (from an enclosing ``grad``) are used as they are, so that
the derivative stays connected to the outer graph. Inside ``no_grad`` these functions still
differentiate ``f`` (they record what they need themselves), but their results record no graph.
"""
from __future__ import annotations

import numpy as np

from .ops import stack
from .tensor import Tensor, _as_tensor, backpropagate, enable_grad, is_grad_enabled


def gradients(output: Tensor, inputs, grad_output=None, create_graph: bool | None = None) -> tuple:
    """The gradients of ``output`` with respect to each of ``inputs`` (Tensors, leaves or not), as a tuple.

    ``grad_output`` seeds the walk (required unless ``output`` has one element; under
    ``create_graph`` a Tensor seed stays in its graph, so the gradients depend on it too); an input
    that ``output`` does not depend on gets zeros. Only the graph between ``output`` and ``inputs``
    is walked. ``.grad`` fields are not touched. ``create_graph``
    (default: whether graph recording is on) records the walk, so that the gradients are Tensors
    of a graph; otherwise they are Tensors holding plain arrays. Raises RuntimeError when
    ``output`` does not require grad.
    """
    if create_graph is None:
        create_graph = is_grad_enabled()
    inputs = tuple(inputs)
    for x in inputs:
        if not isinstance(x, Tensor):
            raise TypeError(f"gradients: inputs must be Tensors, got {type(x).__name__}")
    found = {}
    wanted = {id(x) for x in inputs}

    def keep(node, g):
        if id(node) in wanted:
            found[id(node)] = g

    if output.requires_grad:
        seed = output._seed(grad_output, "gradients", keep_tensor=create_graph)
        backpropagate(output, seed, create_graph, keep, targets=inputs)
    elif output.size != 1 and grad_output is None:
        raise RuntimeError(f"gradients: a seed gradient is needed for a non-scalar output of shape {output.shape}")
    return tuple(_as_tensor(found.get(id(x), np.zeros_like(x.data))) for x in inputs)


def value_and_grad(f, argnums=0):
    """A function returning ``(f(*args, **kwargs), ∂f/∂args[argnums])`` for a scalar-valued ``f``.

    ``argnums`` is an int (one gradient) or a sequence of ints, such as a tuple or a list (a tuple
    of gradients); NumPy integers count as ints. Keyword arguments reach ``f`` as they are, never
    differentiated (as in JAX and HIPS autograd). The value and the gradients are Tensors; each
    gradient has its argument's shape and dtype. Raises TypeError when f does not return a
    one-element Tensor or argnums holds something other than ints, ValueError for an argnum out of
    range.
    """
    targets, several = _argnums(argnums, "value_and_grad")

    def value_and_grad_f(*args, **kwargs):
        recording = is_grad_enabled()
        with enable_grad():
            args, positions = _leaves(args, targets, "value_and_grad", recording)
            out = f(*args, **kwargs)
            if not isinstance(out, Tensor) or out.size != 1:
                shape = out.shape if isinstance(out, Tensor) else type(out).__name__
                raise TypeError(f"grad: f must return a one-element Tensor, got {shape}; for a vector output use "
                                f"jacobian or vjp")
            grads = gradients(out, [args[i] for i in positions], create_graph=recording)
        if not recording:
            out = out.detach()
        return out, grads if several else grads[0]
    return value_and_grad_f


def grad(f, argnums=0):
    """The gradient function of a scalar-valued ``f``: ``grad(f)(*args, **kwargs)`` is ∂f/∂args[argnums]
    (``argnums`` and keyword arguments as in ``value_and_grad``).

    Composes with itself: ``grad(grad(f))`` gives the second derivative of a scalar function.
    """
    value_and_grad_f = value_and_grad(f, argnums)

    def grad_f(*args, **kwargs):
        return value_and_grad_f(*args, **kwargs)[1]
    return grad_f


def vjp(f, *args, **kwargs):
    """``(f(*args, **kwargs), vjp_fn)`` with ``vjp_fn(v)`` the tuple of vᵀ ∂f/∂args, one per positional
    argument; keyword arguments reach ``f`` undifferentiated."""
    recording = is_grad_enabled()
    with enable_grad():
        args, _ = _leaves(args, tuple(range(len(args))), "vjp", recording)
        out = f(*args, **kwargs)
    if not isinstance(out, Tensor):
        raise TypeError(f"vjp: f must return a Tensor, got {type(out).__name__}")

    def vjp_fn(v):
        return gradients(out, args, grad_output=v, create_graph=recording)
    return (out if recording else out.detach()), vjp_fn


def hvp(f, x, v, **kwargs) -> Tensor:
    """The Hessian-vector product H v of a scalar-valued ``f`` at ``x``: ∂/∂x (∇f(x) · v).

    ``v`` has x's shape; keyword arguments reach ``f`` undifferentiated. Two reverse passes, the
    first recorded; the Hessian is never formed.
    """
    v = v.data if isinstance(v, Tensor) else np.asarray(v)
    if v.shape != np.shape(x.data if isinstance(x, Tensor) else x):
        raise ValueError(f"hvp: v of shape {v.shape} for x of shape {np.shape(x)}")
    return grad(lambda x: (grad(f)(x, **kwargs) * v).sum())(x)


def jacobian(f, argnums=0):
    """The Jacobian function of ``f``: ``jacobian(f)(*args, **kwargs)`` has shape f's output shape + the
    argument's (``argnums`` and keyword arguments as in ``value_and_grad``).

    One reverse pass per output element, so meant for small functions.
    """
    targets, several = _argnums(argnums, "jacobian")

    def jacobian_f(*args, **kwargs):
        recording = is_grad_enabled()
        with enable_grad():
            args, positions = _leaves(args, targets, "jacobian", recording)
            out = f(*args, **kwargs)
        if not isinstance(out, Tensor):
            raise TypeError(f"jacobian: f must return a Tensor, got {type(out).__name__}")
        inputs = [args[i] for i in positions]
        rows = []
        for k in range(out.size):
            seed = np.zeros(out.size, out.dtype)
            seed[k] = 1
            rows.append(gradients(out, inputs, grad_output=seed.reshape(out.shape), create_graph=recording))
        results = []
        for j, x in enumerate(inputs):
            if not rows:
                results.append(Tensor(np.zeros(out.shape + x.shape, x.dtype)))
                continue
            results.append(stack([row[j] for row in rows]).reshape(out.shape + x.shape))
        return tuple(results) if several else results[0]
    return jacobian_f


def jvp(f, primals, tangents):
    """``(f(*primals), J·tangents)``: forward mode with JAX's signature.

    ``primals`` and ``tangents`` are sequences of the same length (arrays, numbers or Tensors), each
    tangent of its primal's shape; the result is f's output and the directional derivative
    Σ_i ∂f/∂primals[i] · tangents[i], of the output's shape and dtype, both Tensors.

    How: the transpose of a vector-Jacobian product. The VJP u ↦ Jᵀu is linear in the cotangent u,
    so J·v is the gradient with respect to u of ⟨Jᵀu, v⟩. One forward pass of f, its reverse pass
    recorded with u as a leaf, and one reverse pass through that record: about three to four times
    the cost of evaluating f, whatever the number of inputs and outputs, and no forward rule per op
    (every op's derivative rules are its VJP, and its VJP's VJP). As ``grad``, it records a graph
    while recording is on (so ``jvp`` of ``jvp`` or ``grad`` of ``jvp`` work) and nothing inside
    ``no_grad``. Raises TypeError for primals and tangents that are not sequences of the same length,
    when f does not return a Tensor, or for a floating tangent whose dtype differs from its primal's (never
    cast silently); ValueError for a tangent whose shape differs from its primal's.
    """
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp: primals and tangents must be tuples or lists (one entry per argument of f)")
    if len(primals) != len(tangents):
        raise TypeError(f"jvp: {len(primals)} primal(s) but {len(tangents)} tangent(s)")
    recording = is_grad_enabled()
    with enable_grad():
        args, _ = _leaves(primals, tuple(range(len(primals))), "jvp", recording)
        directions = []
        for i, (x, v) in enumerate(zip(args, tangents)):
            given = np.asarray(v.data if isinstance(v, Tensor) else v)
            if given.dtype.kind == "f" and given.dtype != x.dtype:  # numbers and integers take the primal's
                raise TypeError(f"jvp: tangent {i} has dtype {given.dtype}, its primal {x.dtype}; "
                                f"convert one explicitly with .astype")
            v = v if isinstance(v, Tensor) else Tensor(given.astype(x.dtype, copy=False))
            if v.shape != x.shape:
                raise ValueError(f"jvp: tangent {i} has shape {v.shape}, its primal {x.shape}")
            directions.append(v)
        out = f(*args)
        if not isinstance(out, Tensor):
            raise TypeError(f"jvp: f must return a Tensor, got {type(out).__name__}")
        cotangent = Tensor(np.zeros_like(out.data), requires_grad=True)
        if out.requires_grad:
            transposed = gradients(out, args, grad_output=cotangent, create_graph=True)
            pairing = None
            for g, v in zip(transposed, directions):
                term = (g * v).sum()
                pairing = term if pairing is None else pairing + term
            tangent_out, = gradients(pairing, [cotangent], create_graph=recording)
        else:
            tangent_out = Tensor(np.zeros_like(out.data))
    if not recording:
        out, tangent_out = out.detach(), tangent_out.detach()
    return out, tangent_out


def hessian(f, argnums=0):
    """The Hessian function of a scalar-valued ``f``: ``hessian(f)(*args)`` has shape x.shape + x.shape.

    The Jacobian of the gradient (``jacobian(grad(f))``): one reverse pass through the recorded
    gradient per element of x, so meant for small arguments; ``hvp`` gives H·v without forming H.
    With a sequence ``argnums`` (as in ``value_and_grad``), a tuple of tuples: block (i, j) is
    ∂²f/∂args[i]∂args[j]. Keyword arguments reach ``f`` undifferentiated.
    """
    targets, several = _argnums(argnums, "hessian")
    if not several:
        return jacobian(grad(f, argnums), argnums)

    def hessian_f(*args, **kwargs):
        return tuple(jacobian(grad(f, i), argnums)(*args, **kwargs) for i in targets)
    return hessian_f


def _argnums(argnums, where: str) -> tuple:
    """``argnums`` as a tuple of ints, and whether it was a sequence (then the gradients are a tuple).

    An int or a NumPy integer is one position; a tuple, list or 1-d integer array is several.
    """
    several = isinstance(argnums, (bool, np.bool_)) or not isinstance(argnums, (int, np.integer))
    positions = argnums if several else (argnums,)
    try:
        if isinstance(positions, (str, bytes)) or isinstance(positions, np.ndarray) and positions.ndim != 1:
            raise TypeError
        positions = tuple(positions)
        if any(isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)) for i in positions):
            raise TypeError
    except TypeError:
        raise TypeError(f"{where}: argnums must be an int or a sequence of ints, got {argnums!r}") from None
    return tuple(int(i) for i in positions), several


def _leaves(args, targets: tuple, where: str, recording: bool):
    """``args`` with the differentiated ones (positions ``targets``) as Tensors requiring grad, and their
    positions counted from 0.

    While ``recording``, a Tensor that already requires grad is kept, so that the result stays in
    the graph of whatever differentiates the caller.
    """
    args = list(args)
    for i in targets:
        if not -len(args) <= i < len(args):
            shown = targets[0] if len(targets) == 1 else targets
            raise ValueError(f"{where}: argnums {shown!r} out of range for {len(args)} argument(s)")
        x = args[i]
        if isinstance(x, Tensor) and x.requires_grad and recording:
            continue
        data = np.asarray(x.data if isinstance(x, Tensor) else x)
        if data.dtype.kind != "f":
            raise TypeError(f"{where}: argument {i} must be floating-point to be differentiated, got dtype "
                            f"{data.dtype}")
        args[i] = Tensor(data, requires_grad=True)
    return args, tuple(i % len(args) for i in targets)
