"""Hypothesis profiles of the fuzz tests: a bounded run by default, ``HYPOTHESIS_PROFILE=long`` for the nox session."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SUPPRESSED = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]

settings.register_profile("bounded", max_examples=30, deadline=None, suppress_health_check=SUPPRESSED)
settings.register_profile("long", max_examples=400, deadline=None, suppress_health_check=SUPPRESSED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "bounded"))
