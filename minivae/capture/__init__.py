"""The captured training step: the engine's own step, recorded, then replayed on arrays.

``capture_step(model, optimizer, loss_fn)`` returns a ``CapturedStep``: a callable
``step(x, rng, **scalars) -> loss`` that does what the eager step does —

    optimizer.zero_grad(); loss = loss_fn(Tensor(x), rng, **scalars); loss.backward(); optimizer.step()

— with the same numbers. The first two calls for a key (the batch's shape and dtype, the kernel
backend, the scalars' keywords) *are* that eager step, run by the engine and recorded
(``recording``): every op the forward applies, every draw of the generator, and what the engine's
backward walk (``engine.tensor.backpropagate``, through its recorder) does at every tensor — which
arguments receive a gradient, which contributions are added to earlier ones, which are summed back
to a shape, where hooks run. The recording becomes a *program* of named instructions over numbered
array slots (``program``); the second recording must give the same program with the same constants,
or the step refuses the loss (``CaptureError``): a value the loss computes outside the engine's ops
(from ``x.data``, a draw, ``float(...)``, a variable that changes between steps) would otherwise be
frozen at its first value. Later calls replay the program on arrays: the ops' own forwards and
backwards, no Tensor, no graph walk, and one Adam call over flat buffers (``flat``).
``print(step)`` lists the program (``listing``).

What a replay reads at every step: the batch, the generator's draws (in the order drawn), the
scalar arguments (``step(x, rng, beta=0.3)``: passed to ``loss_fn`` as 0-d Tensors, program inputs
whose value cannot be read outside the engine's ops), the parameters (and the hooks registered on
them). What it refuses (``CaptureError``, naming what and why): constants that differ between the
first two steps or share memory with the batch or a draw, hooks and ``retain_grad`` on tensors made
inside the loss, leaves that require grad but are no parameter of the optimizer.
"""
from .recording import CaptureError
from .step import CapturedStep, NonFiniteError

__all__ = ["CaptureError", "CapturedStep", "NonFiniteError", "capture_step"]


def capture_step(model, optimizer, loss_fn=None, check_finite: bool = True) -> CapturedStep:
    """A ``CapturedStep`` training ``model`` with ``optimizer`` on ``loss_fn(x, rng, **scalars)`` (a scalar Tensor).

    ``step(x, rng, beta=0.3)`` passes ``beta`` on to ``loss_fn`` (as a 0-d Tensor of the
    parameters' dtype) and makes it an input of the program: its value is read at every step.
    ``loss_fn`` defaults to ``model.negative_elbo``. With ``check_finite`` a step whose loss or
    gradients are not finite raises ``NonFiniteError`` before any parameter changes.
    """
    return CapturedStep(model, optimizer, loss_fn, check_finite)
