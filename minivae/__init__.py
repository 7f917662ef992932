"""minivae: a small reverse-mode autodiff engine over NumPy arrays, and a variational auto-encoder."""
from .engine import (
    Tensor, no_grad, is_grad_enabled, Op, primitive, add, sub, mul, div, pow, neg, matmul, linear, exp, log, log1p,
    sqrt, abs, maximum, minimum, where, relu, tanh, sigmoid, softplus, log_sigmoid, sum, mean, max,
    logsumexp, reshape, transpose, getitem, concatenate, stack, binary_cross_entropy_with_logits,
)
from .engine.graph import format_graph, to_dot, count_ops, op_counts
from .engine.fused import SavingOp, dense, bce_with_logits_sum, reparameterize, gaussian_kl
from .gradcheck import gradcheck, GradcheckError
from . import distributions, kernels, nn, optim
from .optim import Adam, SGD
from .vae import VAE
from . import estimators, linear_gaussian
from .estimators import score_function_gradient, reparameterization_gradient
from .data import load_mnist, download_mnist

__version__ = "0.1.0"
