"""minivae: a small reverse-mode autodiff engine over NumPy arrays, and a variational auto-encoder.

``import minivae`` loads the engine and the model (layers 0 to 2); the data, training, study, figures
and command-line code (layers 3 and 4) load when first used (``minivae.load_mnist``,
``minivae.training``, ``minivae.estimators``, ...).
"""
from .engine import (
    Tensor, no_grad, enable_grad, set_grad_enabled, is_grad_enabled, Op, primitive, add, sub, mul, div, pow, neg,
    matmul, exp, log, log1p, sqrt, sign, abs, maximum, minimum, where, relu, tanh, sigmoid, softplus,
    log_sigmoid, sum, mean, max, logsumexp, broadcast_to, sum_to, softmax, log_softmax, reshape, transpose, getitem,
    scatter_add, concatenate, stack, less, less_equal, greater, greater_equal,
    equal, not_equal, gradients, grad, value_and_grad, vjp, jvp, hvp, jacobian, hessian, format_graph, to_dot,
    count_ops,
    op_counts,
)
from . import functions
from .functions import (linear, linear_relu, binary_cross_entropy_with_logits, bernoulli_log_prob, gaussian_rsample,
                        kl_to_standard_normal, kl_diagonal_gaussians, gaussian_log_prob)
from .kernels import fused as _fused  # registers the fused implementations beneath the functions
from .gradcheck import gradcheck, GradcheckError
from . import distributions, kernels, nn, optim
from .optim import Adam, SGD
from .vae import VAE

__version__ = "0.1.0"

_LAZY = {  # attribute: (module under minivae, attribute of it or None for the module itself)
    "data": ("data", None), "training": ("training", None), "study": ("study", None), "figures": ("figures", None),
    "cli": ("cli", None),
    "estimators": ("study.estimators", None), "linear_gaussian": ("study.linear_gaussian", None),
    "score_function_gradient": ("study.estimators", "score_function_gradient"),
    "reparameterization_gradient": ("study.estimators", "reparameterization_gradient"),
    "load_mnist": ("data", "load_mnist"), "download_mnist": ("data", "download_mnist"),
}


def __getattr__(name):
    """The application layers, imported on first use so that ``import minivae`` stays light."""
    if name not in _LAZY:
        raise AttributeError(f"module 'minivae' has no attribute {name!r}")
    import importlib
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(f"{__name__}.{module_name}")
    return module if attribute is None else getattr(module, attribute)
