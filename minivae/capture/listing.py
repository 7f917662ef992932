"""The text of a program: what ``print(step)`` shows, its ops written as the graph's listing writes them."""
from __future__ import annotations

import numpy as np

from ..engine.graph import format_call, short
from ..optim import Adam
from .program import OpBackward, Program


def program_text(program: Program, key: tuple, step) -> str:
    """The listing of ``program`` (made for ``key``) of the captured step ``step``: its inputs, parameters,
    constants, forward, backward and update, one instruction a line."""
    shape, _, backend_name, _ = key
    dtype = program.dtypes[program.batch]
    flat = step._flat
    inputs = [f"  %{program.batch} = x  {shape} {program.dtypes[program.batch]}"]
    inputs += [f"  %{s} = {name}  {program.shapes[s]} {program.dtypes[s]}  (a step argument)"
               for name, s in program.scalars.items()]
    for draw in program.draws:
        arguments = ", ".join([short(a) for a in draw.args] + [
            f"{k}={_dtype_name(v) if k == 'dtype' else short(v)}"
            for k, v in draw.kwargs.items()])
        target = ", ".join(f"%{s}" for s in draw.slots) or "_"
        inputs.append(f"  {target} = rng.{draw.method}({arguments})")
    params = []
    for s, i in sorted(program.parameters.items(), key=lambda item: item[1]):
        p, start = flat.params[i], flat.offsets[i]
        params.append(f"  %{s} = {step._name(p)}  {p.shape} {p.dtype}  params[{start}:{start + p.size}]")
    constants = [f"  %{s} = constant {_value_text(value)}" for s, value in enumerate(program.initial)
                 if value is not None and s not in program.parameters]
    forward = [f"  %{f.out} = {format_call(f.op.name, f.inputs, f.static)}  -> {program.shapes[f.out]} "
               f"{program.dtypes[f.out]}" for f in program.forward]
    backward = _backward_text(program, step)
    fast = isinstance(step.optimizer, Adam) and not program.unused and backend_name == "numba"
    update = (f"  adam_update(params, grads, m, v) over {flat.param.size} {flat.param.dtype} elements, one call"
              if fast else f"  {type(step.optimizer).__name__}.step() (per parameter)")
    header = (f"captured step for x {shape} {dtype} ({backend_name} kernels): {len(program.forward)} forward, "
              f"{sum(isinstance(i, OpBackward) for i in program.backward)} backward instructions "
              f"({program.folded} more backward ones computed once, when recorded)")
    return "\n".join([
        header,
        "inputs (each step):", *inputs,
        "parameters (views into one flat buffer; their gradients into another):", *params,
        "constants:", *(constants or ["  (none)"]),
        "forward:", *forward,
        "backward (d%i: the gradient of the loss with respect to %i):", *backward,
        "update:", update])


def _backward_text(program: Program, step) -> list:
    """The backward's lines: the constant gradients, then each instruction in the walk's order."""
    flat = step._flat
    backward = [f"  d%{program.root} = 1"] + [
        f"  d%{s} = constant (computed once, when recorded)" for s, g in enumerate(program.initial_grads)
        if g is not None and s != program.root]
    for instruction in program.backward:
        if isinstance(instruction, OpBackward):
            targets = ["_"] * len(instruction.inputs)
            for send in instruction.sends:
                written = instruction.out is not None and instruction.out[send.position] is not None
                adds, into = " (+=)" if send.adds else "", " (written into grads)" if written else ""
                targets[send.position] = f"d%{send.target}{adds}{into}"
            backward.append(f"  {', '.join(targets)} = {instruction.op.name}.vjp(d%{instruction.node})")
        else:
            p = flat.params[instruction.index]
            hooks = "  then its hooks" if p._hooks else ""
            backward.append(f"  grads[{step._name(p)}] = d%{instruction.slot}{hooks}")
    return backward


def _dtype_name(dtype) -> str:
    return np.dtype(dtype).name


def _value_text(array) -> str:
    if array.size == 1:
        return f"{array.item()!r}  {array.shape} {array.dtype}"
    return f"{array.shape} {array.dtype}"
