"""The flat buffers of a captured step: every parameter, its gradient and (Adam) both moments, each in one array."""
from __future__ import annotations

import operator

import numpy as np

from ..optim import Adam, Optimizer


class FlatBuffers:
    """One array each for the parameters, their gradients and (Adam) m and v, with a view per parameter.

    Made, it copies the parameters' arrays (and the moments) into the buffers and points each parameter's
    ``data`` (and each moment) at its view, so that the model's and the optimizer's ``state_dict`` and
    ``load_state_dict`` keep working and one Adam call updates everything.
    """

    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        self.params = params = list(optimizer.params)
        sizes = [p.size for p in params]
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        dtype = params[0].dtype
        self.param = np.empty(sum(sizes), dtype)
        self.param_views = self._views(self.param, [p.data for p in params])
        for p, view in zip(params, self.param_views):
            p.data = view  # the former arrays are released here
        self.grad = np.zeros(sum(sizes), dtype)
        self.grad_views = self._views(self.grad, None)
        self.m = self.v = None
        self.moment_views = {}
        if isinstance(optimizer, Adam):
            for buffer in ("m", "v"):
                flat = np.empty(sum(sizes), dtype)
                views = self._views(flat, [optimizer.state[buffer][i] for i in range(len(params))])
                for i, view in enumerate(views):
                    optimizer.state[buffer][i] = view
                setattr(self, buffer, flat)
                self.moment_views[buffer] = views

    def _views(self, flat, arrays):
        views = []
        for k, p in enumerate(self.params):
            view = flat[self.offsets[k]:self.offsets[k] + p.size].reshape(p.shape)
            if arrays is not None:
                np.copyto(view, arrays[k])
            views.append(view)
        return views

    def linked(self) -> bool:
        """Whether every parameter's array and every moment is still its view into the flat buffers."""
        state = self.optimizer.state
        return all(map(operator.is_, map(_DATA, self.params), self.param_views)) and \
            all(len(state[buffer]) == len(views) and all(map(operator.is_, state[buffer], views))
                for buffer, views in self.moment_views.items())


_DATA = operator.attrgetter("data")
