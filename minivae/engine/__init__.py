"""The autodiff engine: Tensor, the graph walk, the ops with their gradients, and derivatives as functions.

It imports nothing else of minivae and needs only NumPy.
"""
from .tensor import (Tensor, BackwardContext, no_grad, enable_grad, set_grad_enabled, is_grad_enabled,
                     backpropagate, unbroadcast)
from .ops import (
    Op, primitive, add, sub, mul, div, pow, neg, matmul, exp, log, log1p, sqrt, sign, abs, maximum,
    minimum, where, relu, tanh, sigmoid, softplus, log_sigmoid, sum, mean, max, logsumexp, broadcast_to, sum_to,
    softmax, log_softmax, reshape, transpose, getitem, scatter_add, concatenate, stack,
    less, less_equal, greater, greater_equal, equal, not_equal,
)
from .functional import gradients, grad, value_and_grad, vjp, jvp, hvp, jacobian, hessian
from .graph import format_graph, to_dot, count_ops, op_counts
