"""Probability distributions over the last axis of a tensor, differentiable in their parameters."""
from .gaussian import DiagonalGaussian, GaussianLikelihood, StandardNormal
from .bernoulli import Bernoulli
from .inverse_cdf import InverseCDFDistribution, Logistic, Exponential, Kumaraswamy
