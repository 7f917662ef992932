"""The computation graph below a tensor: its topological order, a text listing and Graphviz DOT.

A graph's nodes are the tensors that ``root`` depends on: op results and the leaves beneath
them, whether they require grad (inputs, parameters) or not (constants). Nodes are numbered
%0, %1, ... in topological order, so that every node comes after the nodes that feed it.
"""
from __future__ import annotations

from collections import Counter

import numpy as np


def topological_order(root) -> list:
    """Every tensor that ``root`` depends on through ops requiring grad, parents before children.

    Iterative depth-first search, so a chain of any length stays clear of Python's recursion limit.
    """
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        stack.extend((p, False) for p in node.parents if p.requires_grad and id(p) not in visited)
    return order


def graph_nodes(root) -> list:
    """Every tensor of the graph below ``root``, inputs before the ops they feed, each once.

    These are ``topological_order(root)`` plus the constants (tensors not requiring grad, always
    leaves) that feed its ops, each placed just before its first consumer.
    """
    nodes, seen = [], set()
    for node in topological_order(root):
        for parent in node.parents:
            if id(parent) not in seen:
                seen.add(id(parent))
                nodes.append(parent)
        if id(node) not in seen:
            seen.add(id(node))
            nodes.append(node)
    return nodes


def op_counts(root) -> Counter:
    """How many times each op occurs in the graph below ``root``, by op name."""
    return Counter(node.op.name for node in topological_order(root) if node.op is not None)


def count_ops(root) -> int:
    """The number of op nodes in the graph below ``root`` (0 for a leaf)."""
    return sum(op_counts(root).values())


def format_graph(root) -> str:
    """A readable listing of the graph below ``root``, one line per node, then the op count.

    Leaves read ``%i = leaf 'name' (shape) dtype requires_grad`` (a one-element constant also
    shows its value); op nodes read ``%i = op(%j, %k, param=value) -> (shape) dtype``.
    """
    nodes = graph_nodes(root)
    number = {id(node): i for i, node in enumerate(nodes)}
    lines = []
    for i, node in enumerate(nodes):
        if node.op is None:
            lines.append(f"%{i} = {_describe_leaf(node)}")
        else:
            call = format_call(node.op.name, [number[id(p)] for p in node.parents], node.static)
            lines.append(f"%{i} = {call} -> {node.shape} {node.dtype}")
    counts = op_counts(root)
    summary = f"{sum(counts.values())} ops"
    if counts:
        summary += ": " + ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
    return "\n".join(lines + [summary])


def to_dot(root, graph_name: str = "minivae") -> str:
    """The graph below ``root`` as Graphviz DOT text: leaves as boxes, ops as ellipses.

    Edges point from input to op; an op with several inputs labels each edge with the argument's
    position. Render with e.g. ``dot -Tsvg graph.dot -o graph.svg``.
    """
    nodes = graph_nodes(root)
    number = {id(node): i for i, node in enumerate(nodes)}
    lines = [f"digraph {_dot_string(graph_name)} {{", '  node [fontname="monospace"];']
    for i, node in enumerate(nodes):
        if node.op is None:
            label, shape = _describe_leaf(node), "box"
        else:
            params = _static_texts(node.static)
            call = f"{node.op.name}({', '.join(params)})" if params else node.op.name
            label, shape = f"{call}\n{node.shape} {node.dtype}", "ellipse"
        lines.append(f"  n{i} [shape={shape}, label={_dot_string(label)}];")
    for i, node in enumerate(nodes):
        several = len(node.parents) > 1
        for position, parent in enumerate(node.parents):
            attributes = f' [label="{position}"]' if several else ""
            lines.append(f"  n{number[id(parent)]} -> n{i}{attributes};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _describe_leaf(leaf) -> str:
    """``leaf 'name' (shape) dtype`` with ``requires_grad``, or ``= value`` for a one-element constant."""
    words = ["leaf"] + ([repr(leaf.name)] if leaf.name else []) + [str(leaf.shape), str(leaf.dtype)]
    if leaf.requires_grad:
        words.append("requires_grad")
    elif leaf.size == 1:
        words.append(f"= {leaf.data.item()!r}")
    return " ".join(words)


def format_call(name: str, arguments, static: dict) -> str:
    """``name(%i, %j, key=value)``: an op applied to numbered tensors with its static parameters (the graph's
    listing and the captured step's program both write their ops so)."""
    return f"{name}({', '.join([f'%{i}' for i in arguments] + _static_texts(static))})"


def _static_texts(static: dict) -> list:
    """``key=value`` for each static parameter of an op (not what its forward saved for its backward)."""
    return [f"{key}={short(value)}" for key, value in static.items()]


def short(value, limit: int = 40) -> str:
    """A static parameter's repr, arrays summarised by shape, cut to ``limit`` characters."""
    if isinstance(value, np.ndarray) and value.size > 8:
        text = f"array(shape={value.shape}, dtype={value.dtype})"
    elif isinstance(value, np.ndarray):
        text = f"array({value.tolist()})"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _dot_string(text: str) -> str:
    """A DOT double-quoted string: backslashes and quotes escaped, newlines as DOT line breaks."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
