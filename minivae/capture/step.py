"""The captured step: the first two steps of each key recorded (the engine's own forward and walk), the rest
replayed on arrays."""
from __future__ import annotations

import contextlib
import math

import numpy as np

from ..engine import Tensor
from ..engine.tensor import BackwardContext, _run_hooks, unbroadcast
from ..kernels import backend
from ..kernels.checks import all_finite
from ..optim import Adam, Optimizer, adam_update
from . import listing
from .flat import FlatBuffers
from .program import OpBackward, Program, build, differences
from .recording import CaptureError, Recording

_NO_CONTEXT = contextlib.nullcontext()


class NonFiniteError(FloatingPointError):
    """The loss or a gradient is not finite; the parameters were left as they were."""


class CapturedStep:
    """The training step, recorded twice per key and replayed (see ``minivae.capture``)."""

    def __init__(self, model, optimizer: Optimizer, loss_fn=None, check_finite: bool = True):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"capture_step: expected a minivae optimizer, got {type(optimizer).__name__}")
        self.model, self.optimizer, self.check_finite = model, optimizer, check_finite
        self.loss_fn = loss_fn if loss_fn is not None else model.negative_elbo
        self.names = {id(p): name for name, p in model.named_parameters()} if hasattr(model, "named_parameters") \
            else {}
        self.programs = {}   # key -> the program replayed
        self.first = {}      # key -> the program of the first recorded step, until the second confirms it
        self.traces = 0
        dtypes = {p.dtype for p in optimizer.params}
        if len(dtypes) != 1:
            raise CaptureError(f"captured step: the parameters have several dtypes ({sorted(map(str, dtypes))})")
        self._flat = FlatBuffers(optimizer)
        backend.keep_freed_arrays_in_heap()  # the replayed step's large temporaries reuse their pages

    # ----------------------------------------------------------------- a step
    def __call__(self, x, rng, **scalars) -> float:
        """One training step on batch ``x`` drawing from ``rng``; the loss as a Python float.

        ``scalars`` (numbers, e.g. ``beta=0.3``) are passed on to ``loss_fn`` by keyword, as 0-d
        Tensors of the parameters' dtype; each is an input of the program, read at every step.
        Raises TypeError for an ``rng`` that is no ``np.random.Generator`` or a scalar that is no real
        number; CaptureError for a loss a replay could not reproduce (the message says what);
        NonFiniteError (with ``check_finite``) when the loss or a gradient is not finite, before any
        parameter changes.
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"captured step: rng must be a np.random.Generator, got {type(rng).__name__}")
        x = x.data if isinstance(x, Tensor) else np.asarray(x)
        scalars = {name: self._scalar(name, value) for name, value in scalars.items()}
        key = (x.shape, x.dtype.str, backend.active(), tuple(sorted(scalars)))
        if not self._flat.linked():
            self._flat = FlatBuffers(self.optimizer)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore") if self.check_finite else _NO_CONTEXT:
            program = self.programs.get(key)
            if program is None:
                loss, program = self._recorded_step(key, x, rng, scalars)
            else:
                loss = self._replayed_step(program, x, rng, scalars)
        self._update(program)
        return loss

    def _scalar(self, name, value) -> np.ndarray:
        if isinstance(value, Tensor):
            value = value.data
        number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if not number and not (isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf"):
            raise TypeError(f"captured step: the step argument {name}={value!r} must be a real number")
        return np.asarray(value, dtype=self._flat.param.dtype)

    def _recorded_step(self, key, x, rng, scalars) -> tuple[float, Program]:
        """The engine's own step, recorded; the second one of a key confirms the first's program (or refuses it)."""
        recording = Recording(self.loss_fn, x, rng, scalars)
        self.traces += 1
        program = build(recording, self._flat.params, self._name)
        first = self.first.pop(key, None)
        if first is None:
            self.first[key] = program
        else:
            difference = differences(first, program)
            if difference is not None:
                raise CaptureError(
                    f"captured step: the loss's program differs between the first two steps of batches {key[0]}, in "
                    f"{difference}. A value the loss computes outside the engine's ops (from x.data, a draw, "
                    f"float(...), NumPy, or a variable that changes between steps) would be frozen at its first "
                    f"value in a replay: compute it with the engine's ops from x and the draws, or pass a scalar "
                    f"that varies as a step argument: step(x, rng, name=value)")
            program.text = listing.program_text(program, key, self)
            self.programs[key] = program
        loss = self._checked_loss(recording.loss.data)
        index = {id(p): i for i, p in enumerate(self._flat.params)}
        for visit in recording.visits:  # the walk ran the parameters' hooks: these are their whole gradients
            if id(visit.node) in index:
                np.copyto(self._flat.grad_views[index[id(visit.node)]], visit.grad)
        self._check_gradients()
        return loss, program

    def _replayed_step(self, program: Program, x, rng, scalars) -> float:
        flat = self._flat
        values, saved = program.initial[:], [None] * len(program.shapes)
        for s, i in program.parameters.items():
            values[s] = flat.param_views[i]
        values[program.batch] = x
        for name, s in program.scalars.items():
            values[s] = scalars[name]
        for draw in program.draws:
            result = getattr(rng, draw.method)(*draw.args, **draw.kwargs)
            for s in draw.slots:
                values[s] = result
        for instruction in program.forward:
            op = instruction.op
            arrays = [values[i] for i in instruction.inputs]
            if op.saves:
                values[instruction.out], saved[instruction.out] = op.forward(*arrays, **instruction.static)
            else:
                values[instruction.out] = op.forward(*arrays, **instruction.static)
        loss = self._checked_loss(values[program.root])
        grads = program.initial_grads[:]
        for instruction in program.backward:
            if type(instruction) is OpBackward:
                _replay_backward(instruction, values, saved, grads, flat.grad_views)
            else:
                self._write_gradient(instruction.index, grads[instruction.slot])
        self._check_gradients()
        return loss

    def _write_gradient(self, index: int, g) -> None:
        """A parameter's whole gradient into its view of the flat buffer, then its hooks (as the walk runs them)."""
        view, p = self._flat.grad_views[index], self._flat.params[index]
        if g is not view:
            np.copyto(view, g)
        if p._hooks:
            replaced = _run_hooks(p, view, False)
            if replaced is not view:
                np.copyto(view, replaced)

    def _checked_loss(self, loss: np.ndarray) -> float:
        value = loss.item()  # a Python float: float32's inf and NaN stay what they are
        if self.check_finite and not math.isfinite(value):
            raise NonFiniteError(f"the loss is {value}")
        return value

    def _check_gradients(self) -> None:
        flat = self._flat
        if self.check_finite and not all_finite(flat.grad):
            bad = next(i for i, g in enumerate(flat.grad_views) if not np.isfinite(g).all())
            raise NonFiniteError(f"the gradient of {self._name(flat.params[bad])} has non-finite values")

    def _update(self, program: Program) -> None:
        flat, optimizer = self._flat, self.optimizer
        for p, g in zip(flat.params, flat.grad_views):
            p.grad = g
        for i in program.unused:
            flat.params[i].grad = None  # no gradient reaches it: the eager step leaves it as it is
        steps = optimizer.steps.tolist()  # a few Python ints: cheaper to compare than the array
        if program.unused or not isinstance(optimizer, Adam) or steps.count(steps[0]) != len(steps) or \
                backend.active() != "numba":
            # per parameter: another optimizer, some parameters unused, different step counts, or the NumPy
            # reference update, whose temporaries are cheaper per parameter than over the whole buffer
            optimizer.step()
            return
        step = steps[0] + 1
        optimizer.steps += 1
        adam_update(flat.param, flat.grad, flat.m, flat.v, step, optimizer.lr, optimizer.beta1,
                    optimizer.beta2, optimizer.eps, optimizer.weight_decay)

    # ----------------------------------------------------------------- names and reading
    def _name(self, p) -> str:
        if id(p) in self.names:
            return self.names[id(p)]
        return p.name or f"parameter {next(i for i, q in enumerate(self.optimizer.params) if q is p)}"

    def program(self, shape=None) -> str:
        """The listing of the program replayed for batches of ``shape`` (every program when None)."""
        if not self.programs:
            return "captured step: no program yet (the first two steps of a batch shape are recorded)"
        texts = [program.text for key, program in self.programs.items() if shape is None or key[0] == tuple(shape)]
        if not texts:
            raise KeyError(f"captured step: no program for batches of shape {tuple(shape)}; made: "
                           f"{[key[0] for key in self.programs]}")
        return "\n\n".join(texts)

    def __str__(self) -> str:
        return self.program()

    def __repr__(self) -> str:
        return f"<CapturedStep: {len(self.programs)} program(s), {self.traces} recorded step(s)>"


def _replay_backward(instruction: OpBackward, values, saved, grads, grad_views) -> None:
    """One op's backward on arrays, its gradients handed on as the walk handed them."""
    node = instruction.node
    out = None if instruction.out is None else tuple(None if i is None else grad_views[i] for i in instruction.out)
    ctx = BackwardContext(tuple([values[i] for i in instruction.inputs]), values[node], saved[node],
                          instruction.static, instruction.needs_grad, out)
    g, grads[node] = grads[node], None
    input_grads = instruction.op.backward(ctx, g)
    for send in instruction.sends:
        pg = input_grads[send.position]
        if isinstance(pg, Tensor):
            pg = pg.data
        if send.reduce_to is not None:
            pg = unbroadcast(pg, send.reduce_to, f"{instruction.op.name} (argument {send.position})")
        grads[send.target] = grads[send.target] + pg if send.adds else pg
