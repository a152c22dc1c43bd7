"""Suite-wide test settings: hypothesis profiles (CI runs the 'ci' profile)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

pytest_plugins = ("hil_fixtures.pytest_plugin",)

settings.register_profile(
    "ci", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("dev", deadline=None, max_examples=30, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
