"""Hypothesis profiles: 'ci' is reproducible and quick, 'dev' (the default off CI) searches harder.

Choose one with HYPOTHESIS_PROFILE=ci|dev; CI=true selects 'ci'. No deadline: the first call of a
compiled kernel includes its compilation.
"""
import os
import signal

import pytest

from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=30,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def signal_during_step(monkeypatch):
    """``signal_during_step(signum, n)`` makes the training loop raise ``signum`` during step n + 1
    (before its update), whichever step the loop runs (captured or eager); it returns a function
    that undoes it."""
    from minivae.training import loop
    real = loop._training_step

    def arrange(signum, step_number):
        def training_step(*args, **kwargs):
            step = real(*args, **kwargs)

            def with_signal(x, rng, state):
                if state.step == step_number:
                    signal.raise_signal(signum)
                return step(x, rng, state)
            return with_signal
        monkeypatch.setattr(loop, "_training_step", training_step)
        return lambda: monkeypatch.setattr(loop, "_training_step", real)
    return arrange
