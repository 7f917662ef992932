"""The captured training step: trace the eager step once per input shape, then replay its arrays.

``capture_step(model, optimizer, loss_fn)`` returns a ``CapturedStep``: a callable
``step(x, rng) -> loss`` that does what the eager step does —

    optimizer.zero_grad(); loss = loss_fn(Tensor(x), rng); loss.backward(); optimizer.step()

— with the same numbers. The first call for a shape of ``x`` runs the eager forward pass once, with
the batch as a tensor that records, and a generator that notes every draw. The graph it leaves
becomes a *program*: a flat list of instructions over numbered array slots —

- forward: each op node's ``op.forward(*arrays, **static)``, in topological order;
- backward: each op node's ``op.vjp(ctx, g)`` on arrays, in reverse order, its results added into
  the gradients of its inputs in the order the eager walk adds them;
- update: the gradients of the parameters land in one flat buffer, and Adam updates one flat
  buffer of parameters (and of its two moments) in one kernel call.

Later calls of that shape replay the program: no Tensor, no graph walk, no per-op dispatch. The
ops are the eager engine's own (the eager step is the definition), so the captured step gives the
eager step's losses, gradients and parameters bit for bit; the tests hold it to that.
``print(step)`` (or ``step.program()``) lists the program.

The parameters stay the model's objects: from ``capture_step`` on, ``param.data`` is a view into
the flat buffer (and each Adam moment a view into its own), so ``state_dict``/``load_state_dict`` of the model and of
the optimizer keep working, and the eager step can run on the same model in between. After a
step, ``param.grad`` is the parameter's view into the flat gradient buffer. When some parameter of
the optimizer gets no gradient, or the parameters' step counts differ, the update falls back to
``optimizer.step()``, which updates only those with a gradient, as the eager step does.

What a program may hold, checked when it is made (``CaptureError`` otherwise): leaves that are the
batch, draws of the generator passed in (used as they were drawn), the optimizer's parameters,
and constants (taken as they were when traced). So ``loss_fn`` must reach the batch, the
parameters and its random draws through the engine's ops.
"""
from __future__ import annotations

import contextlib
import math
import operator

import numpy as np

from .engine import Tensor, enable_grad, ops
from .engine.graph import topological_order
from .engine.tensor import BackwardContext, unbroadcast
from .kernels import backend, fused
from .optim import Adam, Optimizer, adam_update

_NO_CONTEXT = contextlib.nullcontext()
_STRUCTURAL = ("add", "sub", "neg", "sum", "mean", "reshape", "transpose", "broadcast_to", "sum_to")
"""Engine ops whose backward reads no value, only the output gradient and shapes: where their output
gradient is a constant, so are the gradients they hand on (computed once, when traced)."""

__all__ = ["capture_step", "CapturedStep", "CaptureError", "NonFiniteError"]


class CaptureError(RuntimeError):
    """The loss function's graph holds something a replay could not reproduce."""


class NonFiniteError(FloatingPointError):
    """The loss or a gradient is not finite; the parameters were left as they were."""


def capture_step(model, optimizer: Optimizer, loss_fn=None, check_finite: bool = True) -> "CapturedStep":
    """A ``CapturedStep`` training ``model`` with ``optimizer`` on ``loss_fn(x, rng)`` (a scalar Tensor).

    ``loss_fn`` defaults to ``model.negative_elbo``. With ``check_finite`` a step whose loss or
    gradients are not finite raises ``NonFiniteError`` before any parameter changes.
    """
    return CapturedStep(model, optimizer, loss_fn, check_finite)


# ---------------------------------------------------------------------------- the generator's draws
_DRAWS = tuple(name for name in dir(np.random.Generator)
               if not name.startswith("_") and name not in ("bit_generator", "spawn"))


class _RecordingGenerator(np.random.Generator):
    """A Generator on another generator's bit generator (so it advances that one) noting every draw."""

    def __init__(self, bit_generator):
        super().__init__(bit_generator)
        self.draws = []  # (method name, args, kwargs, result)


def _recording(name):
    def draw(self, *args, **kwargs):
        result = getattr(np.random.Generator, name)(self, *args, **kwargs)
        self.draws.append((name, args, kwargs, result))
        return result
    draw.__name__ = name
    return draw


for _name in _DRAWS:
    setattr(_RecordingGenerator, _name, _recording(_name))


# ---------------------------------------------------------------------------- the program
class _Program:
    """The instructions for one input shape, and their text."""

    def __init__(self):
        self.constants = []     # the slots' values at the start of a step (parameters, constants)
        self.shapes = []        # every slot's shape
        self.input = None       # the batch's slot
        self.draws = []         # (slot, method, args, kwargs)
        self.forward = []       # (forward, input slots, static, output slot, saves)
        self.backward = []      # (vjp, ctx, input slots, node slot, ((target slot | None, adds), ...))
        self.root = None        # the loss's slot
        self.params = []        # (parameter slot, index in the flat buffer's list)
        self.unused = []        # the indices of the parameters no gradient reaches
        self.gradients = []     # (slot, index): gradients copied into the flat buffer after the backward
        self.outs = []          # (ctx, (weight index, bias index)): gradients a backward writes in place
        self.initial_grads = [] # the gradients at the start of the backward (the constant ones)
        self.text = []          # the listing


class CapturedStep:
    """The training step, traced once per input shape and replayed (see the module docstring)."""

    def __init__(self, model, optimizer: Optimizer, loss_fn=None, check_finite: bool = True):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"capture_step: expected a minivae optimizer, got {type(optimizer).__name__}")
        self.model, self.optimizer, self.check_finite = model, optimizer, check_finite
        self.loss_fn = loss_fn if loss_fn is not None else model.negative_elbo
        self.names = {id(p): name for name, p in model.named_parameters()} if hasattr(model, "named_parameters") \
            else {}
        self.programs = {}
        self.traces = 0
        dtypes = {p.dtype for p in optimizer.params}
        if len(dtypes) != 1:
            raise CaptureError(f"captured step: the parameters have several dtypes ({sorted(map(str, dtypes))})")
        self._flat = _Flat(optimizer)
        backend.keep_freed_arrays_in_heap()  # the replayed step's large temporaries reuse their pages

    # ----------------------------------------------------------------- running
    def __call__(self, x, rng) -> float:
        """One training step on batch ``x`` drawing from ``rng``; the loss as a Python float.

        Raises NonFiniteError (with ``check_finite``) when the loss or a gradient is not finite,
        before any parameter changes.
        """
        x = x.data if isinstance(x, Tensor) else np.asarray(x)
        key = (x.shape, x.dtype.str, backend.active())
        with np.errstate(over="ignore", invalid="ignore", divide="ignore") if self.check_finite else _NO_CONTEXT:
            program = self.programs.get(key)
            if program is None:
                program, values, saved = self._trace(x, rng)
                self.programs[key] = program
            else:
                self._check_flat()
                values, saved = self._forward(program, x, rng)
            loss = values[program.root]
            if self.check_finite and not math.isfinite(loss):
                raise NonFiniteError(f"the loss is {float(loss)}")
            self._backward(program, values, saved)
        self._update(program)
        return float(loss)

    def _forward(self, program: _Program, x, rng):
        values = program.constants[:]
        saved = [None] * len(values)
        values[program.input] = x
        for slot, method, args, kwargs in program.draws:
            values[slot] = getattr(rng, method)(*args, **kwargs)
        for forward, inputs, static, out, saves in program.forward:
            if saves:
                values[out], saved[out] = forward(*[values[i] for i in inputs], **static)
            else:
                values[out] = forward(*[values[i] for i in inputs], **static)
        return values, saved

    def _backward(self, program: _Program, values, saved) -> None:
        grads, shapes = program.initial_grads[:], program.shapes
        for vjp, ctx, inputs, node, targets in program.backward:
            _run_vjp(vjp, ctx, inputs, node, targets, values, saved, grads, shapes)
        flat = self._flat
        for slot, i in program.gradients:
            np.copyto(flat.grad_views[i], grads[slot])
        if self.check_finite and not np.isfinite(flat.grad).all():
            bad = next(i for i, g in enumerate(flat.grad_views) if not np.isfinite(g).all())
            raise NonFiniteError(f"the gradient of {self._name(flat.params[bad])} has non-finite values")

    def _update(self, program: _Program) -> None:
        flat, optimizer = self._flat, self.optimizer
        for p, g in zip(flat.params, flat.grad_views):
            p.grad = g
        for i in program.unused:
            flat.params[i].grad = None  # no gradient reaches it: the eager step leaves it as it is
        steps = optimizer.steps
        if program.unused or not isinstance(optimizer, Adam) or (steps != steps[0]).any() or \
                backend.active() != "numba":
            # per parameter: another optimizer, some parameters unused, different step counts, or the NumPy
            # reference update, whose temporaries are cheaper per parameter than over the whole buffer
            optimizer.step()
            return
        step = int(steps[0]) + 1
        steps += 1
        adam_update(flat.param, flat.grad, flat.m, flat.v, step, optimizer.lr, optimizer.beta1,
                    optimizer.beta2, optimizer.eps, optimizer.weight_decay)

    # ----------------------------------------------------------------- tracing
    def _trace(self, x, rng):
        """Run the eager forward on ``x`` once, recording, and compile its graph; the program and the
        forward's values (the first step continues from them)."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"captured step: rng must be a np.random.Generator, got {type(rng).__name__}")
        recorder = _RecordingGenerator(rng.bit_generator)
        batch = Tensor(x, requires_grad=x.dtype.kind == "f")
        with enable_grad():
            loss = self.loss_fn(batch, recorder)
        if not isinstance(loss, Tensor) or loss.size != 1 or not loss.requires_grad:
            raise CaptureError("captured step: loss_fn must return a one-element Tensor that depends on parameters")
        self.traces += 1
        return self._compile(loss, batch, recorder.draws)

    def _compile(self, loss: Tensor, batch: Tensor, draws: list):
        program = _Program()
        order = topological_order(loss)
        slots = {}
        drawn = {id(result): (method, args, kwargs) for method, args, kwargs, result in draws
                 if isinstance(result, np.ndarray)}
        params = {id(p): i for i, p in enumerate(self.optimizer.params)}
        used_params, depends, leaves = [], {}, []

        def slot_of(node) -> int:
            if id(node) not in slots:
                slots[id(node)] = len(program.constants)
                program.constants.append(None)
                program.shapes.append(node.shape)
                leaves.append(node) if node.op is None else None
            return slots[id(node)]

        forward_text = []
        for node in order:
            if node.op is None:
                continue
            inputs = [slot_of(p) for p in node.parents]
            out = slot_of(node)
            program.forward.append((node.op.forward, inputs, dict(node.static), out, node.op.saves))
            depends[id(node)] = any(depends.get(id(p), id(p) in params) for p in node.parents)
            forward_text.append(f"  %{out} = {node.op.name}({', '.join([f'%{i}' for i in inputs] + _statics(node))})"
                                f"  -> {node.shape} {node.dtype}")
        program.root = slots[id(loss)]

        # the leaves: the batch, the draws, the parameters, the constants
        input_text, constant_text, order_of = [], [], {}
        for n, (_, _, _, result) in enumerate(draws):
            order_of[id(result)] = n
        for node in leaves:
            slot = slots[id(node)]
            if node is batch:
                program.input = slot
                input_text.append(f"  %{slot} = x  {node.shape} {node.dtype}")
            elif id(node.data) in drawn:
                method, args, kwargs = drawn.pop(id(node.data))
                program.draws.append((order_of[id(node.data)], slot, method, args, kwargs))
            elif id(node) in params:
                program.constants[slot] = node.data
                used_params.append((params[id(node)], slot))
            elif node.requires_grad:
                raise CaptureError(f"captured step: the loss depends on {node!r}, which requires grad but is not "
                                   f"a parameter of the optimizer")
            elif any(np.shares_memory(node.data, a) for a in [batch.data] + [r for *_, r in draws]
                     if isinstance(a, np.ndarray)):
                raise CaptureError(f"captured step: a constant of shape {node.shape} shares memory with the batch or "
                                   f"a draw of the generator; pass them to the engine's ops as they are")
            else:
                program.constants[slot] = node.data
                constant_text.append(f"  %{slot} = constant {_value_text(node.data)}")
        if program.input is None:
            raise CaptureError("captured step: the loss does not depend on the batch x")
        if not depends.get(id(loss)):
            raise CaptureError("captured step: the loss depends on no parameter of the optimizer")
        if len(program.draws) != len(draws):
            raise CaptureError(f"captured step: {len(draws) - len(program.draws)} draw(s) of the generator do not "
                               f"enter the graph as they were drawn; pass each draw to an op unchanged")
        program.draws = [draw[1:] for draw in sorted(program.draws, key=lambda draw: draw[0])]
        input_text += [f"  %{slot} = rng.{method}({_call_args(args, kwargs)})  {program.shapes[slot]}"
                       for slot, method, args, kwargs in program.draws]

        flat = self._flat
        self._check_flat()
        used = {index for index, _ in used_params}
        program.unused = [i for i in range(len(flat.params)) if i not in used]
        param_text = []
        for index, slot in sorted(used_params):
            i, p = index, self.optimizer.params[index]
            program.constants[slot] = flat.param_views[i]
            start = flat.offsets[i]
            param_text.append(f"  %{slot} = {self._name(p)}  {p.shape} {p.dtype}  params[{start}:{start + p.size}]")

        # backward: reverse topological order over the nodes that depend on a parameter
        param_slots = {slot: index for index, slot in sorted(used_params)}
        entries, contributions = [], {}
        for node in reversed(order):
            if node.op is None or not depends[id(node)]:
                continue
            needs = tuple(depends.get(id(p), id(p) in params) for p in node.parents)
            ctx = BackwardContext.__new__(BackwardContext)
            ctx.static = dict(node.static)
            ctx.__dict__.update(node.static)
            ctx.needs_grad = needs
            targets = []
            for parent, needed in zip(node.parents, needs):
                target = slots[id(parent)] if needed else None
                targets.append((target, contributions.get(target, 0) > 0))
                if needed:
                    contributions[target] = contributions.get(target, 0) + 1
            entries.append([node, ctx, targets])
        for slot in param_slots:
            if slot not in contributions:
                raise CaptureError(f"captured step: no gradient reaches {self._name(flat.params[param_slots[slot]])}")

        # a fused linear layer's backward writes the gradients of its weight and bias straight into the flat
        # buffer, when no other op adds to them
        direct = {}
        for node, ctx, targets in entries:
            if node.op is fused.linear or node.op is fused.linear_relu:
                out = [None, None]
                for k in (1, 2):
                    target = targets[k][0]
                    if target in param_slots and contributions[target] == 1:
                        out[k - 1] = param_slots[target]
                        direct[target] = param_slots[target]
                        targets[k] = (None, False)
                if out != [None, None]:
                    program.outs.append((ctx, tuple(out)))

        # gradients that do not depend on any value (the loss's averages, sums and signs) are computed once
        not_constant, folded = set(), []
        for node, ctx, targets in entries:
            slot = slots[id(node)]
            fold = (slot == program.root or (slot in contributions and slot not in not_constant)) and \
                node.op is getattr(ops, node.op.name, None) and node.op.name in _STRUCTURAL and \
                not any(target in not_constant for target, _ in targets)
            folded.append(fold)
            if not fold:
                not_constant.update(target for target, _ in targets if target is not None)

        backward_text = [f"  d%{program.root} = 1"]
        for (node, ctx, targets), fold in zip(entries, folded):
            slot = slots[id(node)]
            names = []
            for k, (target, adds) in enumerate(targets):
                parent_slot = slots[id(node.parents[k])]
                if parent_slot in direct and target is None and ctx.needs_grad[k]:
                    names.append(f"grads[{self._name(node.parents[k])}]")
                elif target is None:
                    names.append("_")
                else:
                    names.append(f"d%{target}{' (+=)' if adds else ''}")
            line = f"  {', '.join(names)} = {node.op.name}.vjp(d%{slot})"
            backward_text.append(line + ("    [constant: computed once, when traced]" if fold else ""))
            if not fold:
                program.backward.append((node.op.vjp, ctx, [slots[id(p)] for p in node.parents], slot,
                                         tuple(targets)))
        program.params = list(param_slots.items())
        program.gradients = [(slot, i) for slot, i in param_slots.items() if slot not in direct]
        self._relink(program)

        # the values of the traced forward: the first step continues from them, and the constant gradients
        values = program.constants[:]
        saved = [None] * len(values)
        values[program.input] = batch.data
        for node in leaves + [node for node in order if node.op is not None]:
            slot = slots[id(node)]
            if id(node) not in params:
                values[slot], saved[slot] = node.data, node.saved
        grads = [None] * len(values)
        grads[program.root] = np.ones_like(loss.data)
        for (node, ctx, targets), fold in zip(entries, folded):
            if fold:
                _run_vjp(node.op.vjp, ctx, [slots[id(p)] for p in node.parents], slots[id(node)], targets, values,
                         saved, grads, program.shapes)
        program.initial_grads = grads

        update = (f"  adam_update(params, grads, m, v) over {flat.param.size} {flat.param.dtype} elements, one call"
                  if isinstance(self.optimizer, Adam) and not program.unused and backend.active() == "numba"
                  else f"  {type(self.optimizer).__name__}.step() (per parameter)")
        program.text = [f"captured step for x {batch.shape} {batch.dtype} ({backend.active()} kernels): "
                        f"{len(program.forward)} forward, {len(program.backward)} backward instructions "
                        f"({sum(folded)} more backward ones folded into constants)",
                        "inputs (each step):", *input_text,
                        "parameters (views into one flat buffer; their gradients into another):", *param_text,
                        "constants:", *(constant_text or ["  (none)"]),
                        "forward:", *forward_text,
                        "backward (d%i: the gradient of the loss with respect to %i):", *backward_text,
                        "gradients (the others were written in place above):",
                        *([f"  grads[{self._name(flat.params[i])}] = d%{slot}" for slot, i in program.gradients]
                          or ["  (none)"]),
                        "update:", update]

        return program, values, saved

    # ----------------------------------------------------------------- the flat buffers
    def _check_flat(self) -> None:
        """Re-link parameters or moments whose arrays were replaced since the buffers were made."""
        flat = self._flat
        if not flat.linked():
            self._flat = _Flat(self.optimizer)
            for program in self.programs.values():
                self._relink(program)

    def _relink(self, program: _Program) -> None:
        """Point a program's parameter slots and in-place gradient outputs at the current flat buffers."""
        flat = self._flat
        for slot, i in program.params:
            program.constants[slot] = flat.param_views[i]
        for ctx, out in program.outs:
            ctx.out = tuple(None if i is None else flat.grad_views[i] for i in out)

    def _name(self, p) -> str:
        if id(p) in self.names:
            return self.names[id(p)]
        return p.name or f"parameter {next(i for i, q in enumerate(self.optimizer.params) if q is p)}"

    # ----------------------------------------------------------------- reading
    def program(self, shape=None) -> str:
        """The listing of the program traced for batches of ``shape`` (every program when None)."""
        if not self.programs:
            return "captured step: not traced yet (the first call traces it)"
        texts = [program.text for key, program in self.programs.items() if shape is None or key[0] == tuple(shape)]
        if not texts:
            raise KeyError(f"captured step: no program for batches of shape {tuple(shape)}; traced: "
                           f"{[key[0] for key in self.programs]}")
        return "\n\n".join("\n".join(text) for text in texts)

    def __str__(self) -> str:
        return self.program()

    def __repr__(self) -> str:
        return f"<CapturedStep: {len(self.programs)} program(s), {self.traces} trace(s)>"


class _Flat:
    """The flat buffers: parameters, gradients and (Adam) m and v, with the per-parameter views."""

    def __init__(self, optimizer: Optimizer):
        self.params = params = list(optimizer.params)
        self.indices = indices = range(len(params))
        sizes = [p.size for p in params]
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        dtype = params[0].dtype
        self.param = np.empty(sum(sizes), dtype)
        self.param_views = self._views(self.param, [p.data for p in params])
        for p, view in zip(params, self.param_views):
            p.data = view  # the former arrays are released here
        self.grad = np.zeros(sum(sizes), dtype)
        self.grad_views = self._views(self.grad, None)
        self.optimizer = optimizer
        self.m = self.v = None
        self.moment_views = {}
        if isinstance(optimizer, Adam):
            for buffer in ("m", "v"):
                flat = np.empty(sum(sizes), dtype)
                views = self._views(flat, [optimizer.state[buffer][i] for i in indices])
                for i, view in zip(indices, views):
                    optimizer.state[buffer][i] = view
                setattr(self, buffer, flat)
                self.moment_views[buffer] = views

    def _views(self, flat, arrays):
        views = []
        for k, p in enumerate(self.params):
            view = flat[self.offsets[k]:self.offsets[k] + p.size].reshape(p.shape)
            if arrays is not None:
                np.copyto(view, arrays[k])
            views.append(view)
        return views

    def linked(self) -> bool:
        """Whether every parameter's array and every moment is still its view into the flat buffers."""
        if not all(map(operator.is_, [p.data for p in self.params], self.param_views)):
            return False
        state = self.optimizer.state
        return all(all(map(operator.is_, [state[buffer][i] for i in self.indices], views))
                   for buffer, views in self.moment_views.items())


def _run_vjp(vjp, ctx, inputs, node, targets, values, saved, grads, shapes) -> None:
    """One backward instruction: the op's vjp on arrays, its results added into its inputs' gradients."""
    ctx.inputs = tuple([values[i] for i in inputs])
    ctx.ans, ctx.saved = values[node], saved[node]
    g, grads[node] = grads[node], None
    input_grads = vjp(ctx, g)
    ctx.inputs = ctx.ans = ctx.saved = None  # hold no array between steps
    for (target, adds), pg in zip(targets, input_grads):
        if target is None:
            continue
        if isinstance(pg, Tensor):
            pg = pg.data
        if pg.shape != shapes[target]:
            pg = unbroadcast(pg, shapes[target], "captured step")
        grads[target] = grads[target] + pg if adds else pg


# ---------------------------------------------------------------------------- text
def _short(value, limit: int = 40) -> str:
    if isinstance(value, np.ndarray):
        text = f"array({value.tolist()})" if value.size <= 8 else f"array(shape={value.shape}, dtype={value.dtype})"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _statics(node) -> list:
    return [f"{key}={_short(value)}" for key, value in node.static.items()]


def _call_args(args, kwargs) -> str:
    return ", ".join([_short(a) for a in args] + [f"{k}={np.dtype(v).name if k == 'dtype' else _short(v)}"
                                                  for k, v in kwargs.items()])


def _value_text(array: np.ndarray) -> str:
    if array.size == 1:
        return f"{array.item()!r}  {array.shape} {array.dtype}"
    return f"{array.shape} {array.dtype}"
