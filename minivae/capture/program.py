"""The program: a recorded step as named instructions over numbered array slots.

``build(recording, ...)`` turns one ``Recording`` into a ``Program``: the slots (every tensor of the step,
numbered in the order the forward met them), the inputs of each step (the batch, the draws, the scalar
arguments), the parameters, the constants, the forward (the recorded op applications the loss needs, in
the order applied) and the backward (the walk's visits, in the walk's order). Nothing is derived again:
which arguments get a gradient, which contributions are added to earlier ones and which are summed back
to a shape is what the walk did.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .recording import CaptureError, Recording, StepScalar


@dataclass(frozen=True)
class Draw:
    """``values[slots] = rng.<method>(*args, **kwargs)``: one draw of the step's generator (its result may reach
    several leaves, or none)."""
    method: str
    args: tuple
    kwargs: dict
    slots: tuple


@dataclass(frozen=True)
class Forward:
    """``values[out] = op.forward(*values[inputs], **static)`` (and ``saved[out]`` when the op saves)."""
    op: object
    inputs: tuple
    static: dict
    out: int


@dataclass(frozen=True)
class Send:
    """One gradient an op's backward hands on: to ``target``, added to what reached it before (``adds``),
    summed back to ``reduce_to`` first where that is a shape."""
    position: int
    target: int
    adds: bool
    reduce_to: tuple | None


@dataclass
class OpBackward:
    """``op.backward(ctx, grads[node])`` on arrays, then its ``sends``. ``out``: per argument, the index of the
    parameter whose flat gradient view the op may write into (``op.writes_out``), or None."""
    op: object
    inputs: tuple
    node: int
    static: dict
    needs_grad: tuple
    sends: tuple
    out: tuple = None


@dataclass(frozen=True)
class ParameterGradient:
    """The whole gradient of parameter ``index`` (slot ``slot``) is known: write it to the flat buffer, run its
    hooks."""
    slot: int
    index: int


@dataclass
class Program:
    """The instructions for one key (batch shape and dtype, backend, scalar keywords)."""
    shapes: list                      # every slot's shape
    dtypes: list                      # every slot's dtype
    initial: list                     # every slot's value at the start of a step (parameters, constants)
    batch: int | None                 # the batch's slot
    scalars: dict                     # keyword -> slot
    draws: list                       # Draw, in the order drawn
    forward: list                     # Forward, in the order applied
    root: int                         # the loss's slot
    backward: list                    # OpBackward and ParameterGradient, in the walk's order
    initial_grads: list               # the gradients computed once, when traced (None elsewhere)
    folded: int                       # how many backward instructions were computed once, when traced
    parameters: dict                  # slot -> parameter index
    unused: list                      # the indices of the parameters no gradient reaches
    text: str = ""                    # the listing (``minivae.capture.listing``)


def build(recording: Recording, params: list, names) -> Program:
    """The program of ``recording`` for the optimizer's ``params``; ``names(p)`` names a parameter in messages.

    Raises CaptureError for what a replay could not reproduce: a leaf requiring grad that is no parameter,
    a constant sharing memory with the batch or a draw, a hook or ``retain_grad`` on a tensor made inside the
    loss, a loss that reaches no parameter.
    """
    slots, shapes, dtypes = {}, [], []

    def slot(tensor) -> int:
        if id(tensor) not in slots:
            slots[id(tensor)] = len(shapes)
            shapes.append(tensor.shape)
            dtypes.append(tensor.dtype)
        return slots[id(tensor)]

    forward, leaves = _forward(recording, slot)
    root = slots[id(recording.loss)]
    initial = [None] * len(shapes)
    program = Program(shapes, dtypes, initial, None, {}, [], forward, root, [], [None] * len(shapes), 0, {}, [])
    _leaves(program, recording, leaves, slots, params)
    _backward(program, recording, slots, names)
    used = set(program.parameters.values())
    if not used:
        raise CaptureError("captured step: the loss depends on no parameter of the optimizer")
    program.unused = [i for i in range(len(params)) if i not in used]
    return program


def _forward(recording: Recording, slot) -> tuple[list, list]:
    """The recorded op applications the loss needs, in the order applied, and the leaves they read."""
    made = {id(out): (out, op, parents, static) for out, op, parents, static, _ in recording.applications}
    needed, stack, leaves = set(), [recording.loss], []
    while stack:
        tensor = stack.pop()
        if id(tensor) in needed:
            continue
        needed.add(id(tensor))
        if id(tensor) in made:
            stack.extend(made[id(tensor)][2])
        else:
            leaves.append(tensor)
    forward = []
    for out, op, parents, static, _ in recording.applications:
        if id(out) in needed:
            inputs = tuple(slot(p) for p in parents)
            forward.append(Forward(op, inputs, dict(static), slot(out)))
    for leaf in leaves:
        slot(leaf)
    if id(recording.loss) not in made:
        raise CaptureError("captured step: the loss is a leaf, not the result of an op")
    return forward, leaves


def _leaves(program: Program, recording: Recording, leaves: list, slots: dict, params: list) -> None:
    """Sort the leaves into the batch, the scalars, the draws, the parameters and the constants."""
    batch = recording.batch.data
    drawn = {}
    for *_, result in recording.draws:
        drawn.setdefault(id(result), [])
    index_of = {id(p): i for i, p in enumerate(params)}
    outside = [batch] + [r for *_, r in recording.draws if isinstance(r, np.ndarray)]
    for leaf in leaves:
        s = slots[id(leaf)]
        if leaf.data is batch:
            program.batch = s  # the batch, or its array passed to an op
        elif isinstance(leaf, StepScalar):
            program.scalars[leaf.keyword] = s
        elif id(leaf.data) in drawn:
            drawn[id(leaf.data)].append(s)
        elif id(leaf) in index_of:
            program.parameters[s] = index_of[id(leaf)]
        elif leaf.requires_grad:
            raise CaptureError(f"captured step: the loss depends on {leaf!r}, which requires grad but is not a "
                               f"parameter of the optimizer")
        elif any(np.shares_memory(leaf.data, a) for a in outside):
            raise CaptureError(f"captured step: a constant of shape {leaf.shape} shares memory with the batch or a "
                               f"draw of the generator: its values would be frozen at the first step's; pass the "
                               f"batch and the draws to the engine's ops as they are")
        else:
            program.initial[s] = leaf.data
    if program.batch is None:
        raise CaptureError("captured step: the loss does not depend on the batch x")
    program.draws = [Draw(method, args, kwargs, tuple(drawn[id(result)]))
                     for method, args, kwargs, result in recording.draws]


def _backward(program: Program, recording: Recording, slots: dict, names) -> None:
    """The walk's visits as instructions; those whose output gradient is a constant and whose op reads no value
    are computed once (their gradients become ``initial_grads``)."""
    constant = {program.root: True}  # slot -> whether every gradient reaching it so far is a constant
    program.initial_grads[program.root] = np.ones(program.shapes[program.root], program.dtypes[program.root])
    sends_to = {}
    for visit in recording.visits:
        node, s = visit.node, slots[id(visit.node)]
        if s in program.parameters:
            program.backward.append(ParameterGradient(s, program.parameters[s]))
            continue
        if visit.hooked:
            raise CaptureError(f"captured step: a hook is registered on a tensor made inside the loss ({node!r}): "
                               f"a replay makes no tensors, so it could not call it; register hooks on parameters "
                               f"(replayed at every step), or use the eager step")
        if node._retains_grad:
            raise CaptureError(f"captured step: retain_grad() on a tensor made inside the loss ({node!r}): a replay "
                               f"makes no tensors to keep a gradient in; use the eager step to read it")
        if node.op is None:
            continue  # a leaf requiring grad that is no parameter was refused with the leaves
        targets = [slots[id(node.parents[position])] for position, *_ in visit.sends]
        for target in targets:
            sends_to[target] = sends_to.get(target, 0) + 1
        sends = tuple(Send(position, target, adds, node.parents[position].shape if reduced else None)
                      for (position, _, adds, reduced), target in zip(visit.sends, targets))
        fold = constant.get(s, False) and not node.op.backward_reads_values and not any(send.adds for send in sends)
        for (_, gradient, _, _), send in zip(visit.sends, sends):
            constant[send.target] = fold and constant.get(send.target, True)
            if fold:
                program.initial_grads[send.target] = gradient
        if fold:
            program.folded += 1
            continue
        program.backward.append(OpBackward(node.op, tuple(slots[id(p)] for p in node.parents), s, dict(node.static),
                                           visit.ctx.needs_grad, sends))
    _write_in_place(program, sends_to)


def _write_in_place(program: Program, sends_to: dict) -> None:
    """Where an op declares ``writes_out`` and it hands a parameter its only gradient (of the parameter's shape),
    the op writes that gradient straight into the parameter's view of the flat buffer."""
    for instruction in program.backward:
        if not isinstance(instruction, OpBackward):
            continue
        writes = getattr(instruction.op, "writes_out", ())
        out = [None] * len(instruction.inputs)
        for send in instruction.sends:
            target = send.target
            if send.position in writes and target in program.parameters and sends_to[target] == 1 and \
                    send.reduce_to is None:
                out[send.position] = program.parameters[target]
        instruction.out = tuple(out) if any(i is not None for i in out) else None


def differences(first: Program, second: Program) -> str | None:
    """What differs between the programs of two recorded steps (None: nothing): the ops, their static
    parameters, the draws, or a constant's value — each a value the loss computed outside the engine's ops."""
    if [(f.op, f.inputs, f.out) for f in first.forward] != [(f.op, f.inputs, f.out) for f in second.forward]:
        ops = next(((a.op.name, b.op.name) for a, b in zip(first.forward, second.forward) if a.op is not b.op),
                   None)
        return "its ops" + (f" ({ops[0]} where the other step applied {ops[1]})" if ops else "")
    for f, g in zip(first.forward, second.forward):
        if not _same(f.static, g.static):
            return f"the parameters of its op {f.op.name} (%{f.out}): {_brief(f.static)} and {_brief(g.static)}"
    if [(d.method, d.slots) for d in first.draws] != [(d.method, d.slots) for d in second.draws] or not all(
            _same((a.args, a.kwargs), (b.args, b.kwargs)) for a, b in zip(first.draws, second.draws)):
        return "its draws of the generator"
    if first.shapes != second.shapes or first.dtypes != second.dtypes:
        return "the shapes of its tensors"
    for s, (a, b) in enumerate(zip(first.initial, second.initial)):
        if s in first.parameters or (a is None) != (b is None):
            continue
        if a is not None and not _same(a, b):
            reader = next(f for f in first.forward if s in f.inputs)
            return (f"the constant %{s} {a.shape} {a.dtype} read by {reader.op.name} (%{reader.out}): "
                    f"{_brief(a)} at one step, {_brief(b)} at the next")
    return None


def _same(a, b) -> bool:
    """Equal values of the same type, shape and dtype, arrays and containers compared elementwise (NaN equal)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and \
            np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and (a == b or _is_nan(a) and _is_nan(b))


def _is_nan(value) -> bool:
    return isinstance(value, (float, np.floating)) and bool(np.isnan(value))


def _brief(value) -> str:
    if isinstance(value, np.ndarray) and value.size <= 4:
        return repr(value.tolist())
    if isinstance(value, np.ndarray):
        return f"array of mean {float(np.mean(value)):.6g}" if value.dtype.kind in "fiub" else "an array"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
