"""Printing the graph below a tensor, exporting it as DOT, and counting its ops."""
import re

import numpy as np

import minivae as mv
from minivae.engine.graph import graph_nodes


def small_model():
    """loss = mean(relu(x @ w + b) ** 2) with named leaves; x is a constant."""
    x = mv.Tensor(np.ones((8, 5), np.float32), name="x")
    w = mv.Tensor(np.ones((5, 3), np.float32), requires_grad=True, name="w")
    b = mv.Tensor(np.zeros(3, np.float32), requires_grad=True, name="b")
    return ((x @ w + b).relu() ** 2).mean(axis=0)


def test_format_graph_lists_every_node_with_op_shape_dtype_params_and_inputs():
    lines = mv.format_graph(small_model()).splitlines()
    assert lines == [
        "%0 = leaf 'b' (3,) float32 requires_grad",
        "%1 = leaf 'w' (5, 3) float32 requires_grad",
        "%2 = leaf 'x' (8, 5) float32",
        "%3 = matmul(%2, %1) -> (8, 3) float32",
        "%4 = add(%3, %0) -> (8, 3) float32",
        "%5 = relu(%4) -> (8, 3) float32",
        "%6 = leaf () float32 = 2.0",
        "%7 = pow(%5, %6) -> (8, 3) float32",
        "%8 = mean(%7, axis=0, keepdims=False) -> (3,) float32",
        "5 ops: add 1, matmul 1, mean 1, pow 1, relu 1",
    ]


def test_a_node_used_twice_is_listed_once_and_large_index_arrays_are_summarised():
    x = mv.Tensor(np.arange(20.0), requires_grad=True)
    y = x * x
    z = (y + y)[np.arange(10)]
    listing = mv.format_graph(z)
    assert listing.count("mul(") == 1 and "add(%1, %1)" in listing
    assert "index=array(shape=(10,), dtype=int64)" in listing
    assert mv.count_ops(z) == 3 and mv.op_counts(z) == {"mul": 1, "add": 1, "getitem": 1}


def test_a_leaf_is_a_graph_without_ops():
    leaf = mv.Tensor(np.zeros(2), name="alone")
    assert mv.format_graph(leaf) == "%0 = leaf 'alone' (2,) float64\n0 ops"
    assert mv.count_ops(leaf) == 0


def dot_structure(dot):
    """The node ids and the (source, target) edges of DOT text, checking its outline on the way."""
    lines = dot.strip().splitlines()
    assert lines[0] == 'digraph "minivae" {' and lines[-1] == "}"
    nodes = [m.group(1) for m in map(re.compile(r'^  (n\d+) \[shape=(box|ellipse), label="(\\.|[^"\\])*"\];$').match,
                                     lines) if m]
    edges = [m.groups() for m in map(re.compile(r'^  (n\d+) -> (n\d+)( \[label="\d+"\])?;$').match, lines) if m]
    assert len(nodes) + len(edges) + 3 == len(lines)  # header, node defaults, closing brace
    return nodes, [edge[:2] for edge in edges]


def test_to_dot_has_one_node_per_tensor_and_one_edge_per_input():
    loss = small_model()
    nodes, edges = dot_structure(mv.to_dot(loss))
    all_nodes = graph_nodes(loss)
    assert len(nodes) == len(all_nodes) == 9
    assert len(edges) == sum(len(node.parents) for node in all_nodes) == 8
    assert all(source in nodes and target in nodes for source, target in edges)
    assert len({target for _, target in edges}) == mv.count_ops(loss) == 5


def test_to_dot_escapes_quotes_and_backslashes_in_names():
    x = mv.Tensor(np.ones(2), requires_grad=True, name='say "hi" \\ bye')
    dot = mv.to_dot(x.exp())
    # The listing shows the name's repr (one backslash becomes two); DOT escaping doubles them again.
    assert r'''label="leaf 'say \"hi\" \\\\ bye' (2,) float64 requires_grad"''' in dot
    dot_structure(dot)


def test_a_10000_op_chain_is_listed_counted_and_exported():
    x = mv.Tensor(np.ones(3), requires_grad=True, name="x")
    y = x
    for _ in range(10_000):
        y = y.tanh()
    assert mv.count_ops(y) == 10_000
    lines = mv.format_graph(y).splitlines()
    assert len(lines) == 10_002 and lines[-1] == "10000 ops: tanh 10000"
    nodes, edges = dot_structure(mv.to_dot(y))
    assert len(nodes) == 10_001 and len(edges) == 10_000
