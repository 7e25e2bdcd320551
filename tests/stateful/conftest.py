"""Hypothesis profiles of the stateful suite, selected by HYPOTHESIS_PROFILE.

quick (default, `make test`): a few dozen short runs, the whole suite well under 2 minutes.
long (`make fuzz-long`): thousands of longer runs; see docs/fuzzing.md.

The profile is applied only to the state machines here (not loaded globally), so the
hypothesis tests of other suites keep their own settings.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    "print_blob": True,
}
settings.register_profile("quick", max_examples=12, stateful_step_count=40, **_COMMON)
settings.register_profile("long", max_examples=3_000, stateful_step_count=80, **_COMMON)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "quick")


@pytest.fixture(scope="session")
def stateful_settings():
    """The selected profile (quick unless HYPOTHESIS_PROFILE names another)."""
    if PROFILE not in ("quick", "long"):
        raise pytest.UsageError(f"HYPOTHESIS_PROFILE: expected 'quick' or 'long', got {PROFILE!r}")
    return settings.get_profile(PROFILE)


@pytest.fixture(scope="session")
def deployment():
    """The contracts compiled and deployed once on titanoboa (examples roll back to it)."""
    from .harness import system

    return system()


@pytest.fixture
def fresh(deployment):
    """The deployment, rolled back (storage and block time) after the test."""
    import boa

    with boa.env.anchor():
        yield deployment
