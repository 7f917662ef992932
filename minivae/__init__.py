"""minivae: a small reverse-mode autodiff engine over NumPy arrays, and a variational auto-encoder."""
from .engine import (
    Tensor, no_grad, is_grad_enabled, Op, primitive, add, sub, mul, div, pow, neg, matmul, linear, exp, log, log1p,
    sqrt, abs, maximum, minimum, where, relu, tanh, sigmoid, softplus, log_sigmoid, sum, mean, max,
    logsumexp, reshape, transpose, getitem, concatenate, stack, binary_cross_entropy_with_logits,
)

__version__ = "0.1.0"
