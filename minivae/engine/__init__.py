"""The autodiff engine: Tensor, the graph walk, and the ops with their gradients."""
from .tensor import Tensor, no_grad, is_grad_enabled
from .ops import (
    Op, primitive, add, sub, mul, div, pow, neg, matmul, linear, exp, log, log1p, sqrt, abs, maximum, minimum,
    where, relu, tanh, sigmoid, softplus, log_sigmoid, sum, mean, max, logsumexp, reshape, transpose,
    getitem, concatenate, stack, binary_cross_entropy_with_logits,
)
