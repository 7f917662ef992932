"""One eager training step, recorded: the ops the forward applied, the generator's draws, and what the
engine's backward walk did at every tensor (``backpropagate``'s recorder)."""
from __future__ import annotations

import numpy as np

from ..engine import Tensor, backpropagate, enable_grad
from ..engine.tensor import record_forward, walks_begun


class CaptureError(RuntimeError):
    """The loss function does something a replay could not reproduce; the message says what and why."""


class StepScalar(Tensor):
    """A scalar argument of the step (``step(x, rng, beta=0.3)``) as ``loss_fn`` receives it while traced: a 0-d
    Tensor of the parameters' dtype, an input of the program. Its value cannot be read outside the engine's
    ops (``float``, ``bool``, comparisons, ``.item()``, NumPy): that would freeze it at the traced step's value."""

    __slots__ = ("keyword",)

    def __init__(self, keyword: str, value: np.ndarray):
        super().__init__(value)
        self.keyword = keyword

    def _frozen(self, *args, **kwargs):
        raise CaptureError(f"captured step: the step argument {self.keyword!r} is an input of the program; reading "
                           f"its value outside the engine's ops (float(), bool(), .item(), NumPy) would freeze it at "
                           f"its first value: compute with it through the engine's ops (e.g. {self.keyword} * kl)")

    __float__ = __int__ = __bool__ = __array__ = item = numpy = _frozen
    __lt__ = __le__ = __gt__ = __ge__ = __eq__ = __ne__ = _frozen  # comparisons record no graph: a branch on one
    __hash__ = Tensor.__hash__


_DRAWS = tuple(name for name in dir(np.random.Generator)
               if not name.startswith("_") and name not in ("bit_generator", "spawn"))


class RecordingGenerator(np.random.Generator):
    """A Generator on another generator's bit generator (so it advances that one) noting every draw as
    ``(method name, args, kwargs, result)``."""

    def __init__(self, bit_generator):
        super().__init__(bit_generator)
        self.draws = []


def _recording(name):
    def draw(self, *args, **kwargs):
        result = getattr(np.random.Generator, name)(self, *args, **kwargs)
        self.draws.append((name, args, kwargs, result))
        return result
    draw.__name__ = name
    return draw


for _name in _DRAWS:
    setattr(RecordingGenerator, _name, _recording(_name))


class Recording:
    """``loss_fn(Tensor(x), rng, **scalars)`` and its backward, run by the engine and recorded.

    ``applications``: every op applied to a Tensor, in order, as ``(result, op, parents, static, saved)``;
    ``draws``: the generator's draws, in order; ``visits``: the walk's ``Visit`` at each tensor, in the
    walk's order; ``loss``, ``batch`` and ``scalars`` (keyword -> ``StepScalar``) the tensors themselves.
    """

    def __init__(self, loss_fn, x: np.ndarray, rng: np.random.Generator, scalars: dict):
        self.batch = Tensor(x)
        self.scalars = {name: StepScalar(name, value) for name, value in scalars.items()}
        generator = RecordingGenerator(rng.bit_generator)
        walks = walks_begun()
        with enable_grad(), record_forward() as applications:
            loss = loss_fn(self.batch, generator, **self.scalars)
        if walks_begun() != walks:
            raise CaptureError("captured step: loss_fn runs a backward (backward, gradients, grad, jvp, ...): the "
                               "masks and values its backward computes would be constants of the program, frozen "
                               "at the recorded steps' values; train such a loss with the eager step")
        if not isinstance(loss, Tensor) or loss.size != 1 or not loss.requires_grad:
            raise CaptureError("captured step: loss_fn must return a one-element Tensor that depends on parameters")
        self.loss, self.applications, self.draws = loss, applications, generator.draws
        self.visits = []
        backpropagate(loss, np.ones_like(loss.data), False, _keep_nothing, recorder=self.visits.append)


def _keep_nothing(node, g) -> None:
    """The recorded walk leaves no ``.grad``: the captured step writes the parameters' into its flat buffer."""
