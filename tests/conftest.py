"""Hypothesis profiles: 'ci' is reproducible and quick, 'dev' (the default off CI) searches harder.

Choose one with HYPOTHESIS_PROFILE=ci|dev; CI=true selects 'ci'. No deadline: the first call of a
compiled kernel includes its compilation.
"""
import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=30,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
