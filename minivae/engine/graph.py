"""The computation graph below a tensor: its topological order."""
from __future__ import annotations


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
