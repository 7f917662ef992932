"""The studies beside training: the score-function and reparameterization gradient estimators
(``estimators``), their variance (``variance``), and a linear-Gaussian model whose ELBO and posterior
are known exactly (``linear_gaussian``)."""
