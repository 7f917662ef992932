"""Hypothesis profiles, running without Numba, and shared fixtures.

Hypothesis: 'ci' is reproducible and quick, 'dev' (the default off CI) searches harder. Choose one
with HYPOTHESIS_PROFILE=ci|dev; CI=true selects 'ci'. No deadline: the first call of a compiled
kernel includes its compilation.

Numba is optional: where it cannot be imported, a test that switches to the numba backend
(``kernels.use("numba")``) is skipped at that point, saying so; everything else runs on the
reference kernels. MINIVAE_WITHOUT_NUMBA=1 runs the suite as if Numba were not installed (in
this process and in the processes the tests start).
"""
import os
import signal
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

if os.environ.get("MINIVAE_WITHOUT_NUMBA") == "1":
    _hidden = Path(tempfile.mkdtemp(prefix="without-numba-"))
    (_hidden / "numba.py").write_text('raise ImportError("Numba is hidden: MINIVAE_WITHOUT_NUMBA=1")\n')
    sys.path.insert(0, str(_hidden))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_hidden), os.environ.get("PYTHONPATH")]))

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


@pytest.fixture(autouse=True)
def _numba_backend_skips_without_numba(monkeypatch):
    """Without Numba, ``kernels.use("numba")`` skips the test that asks for it (instead of failing)."""
    from minivae import kernels
    from minivae.kernels import backend
    if backend.numba is not None:
        return
    use = backend.use

    def use_or_skip(name: str):
        if name == "numba":
            pytest.skip("the numba backend needs Numba, which is not installed")
        return use(name)
    monkeypatch.setattr(backend, "use", use_or_skip)
    monkeypatch.setattr(kernels, "use", use_or_skip)


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    """An MNIST directory of 300 training and 100 held-out digits (of the embedded set)."""
    from minivae.data import MnistSplit, load_mnist, save_mnist
    everything = load_mnist()
    subset = MnistSplit(everything.train_images[:300], everything.train_labels[:300],
                        everything.test_images[:100], everything.test_labels[:100], "subset")
    return save_mnist(subset, tmp_path_factory.mktemp("mnist"))
