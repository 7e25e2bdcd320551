"""Hypothesis profiles of the stateful suite, selected by HYPOTHESIS_PROFILE.

quick (default, `make test`): a few dozen short runs, the whole suite well under 2 minutes.
long (`make test-long`): thousands of longer runs; see docs/fuzzing.md. The same switch sets the
example counts of the other suites' hypothesis tests (tests/support/fuzz.py).

The profile is applied only to the state machines here (not loaded globally): the hypothesis
tests of other suites set their own counts with tests/support/fuzz.py `examples`.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings
from support.fuzz import PROFILE

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    "print_blob": True,
}
# STATEFUL_EXAMPLES overrides the number of runs (e.g. to fit a long run into a time box)
_EXAMPLES = os.environ.get("STATEFUL_EXAMPLES")
# quick: no shrinking phase (a shrink of a stateful boa run can take minutes; the failure
# still prints its full sequence and a reproduction blob). long: shrinks to a minimal case.
settings.register_profile(
    "quick",
    max_examples=int(_EXAMPLES or 10),
    stateful_step_count=40,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    **_COMMON,
)
settings.register_profile("long", max_examples=int(_EXAMPLES or 3_000), stateful_step_count=80, **_COMMON)


@pytest.fixture(scope="session")
def stateful_settings():
    """The selected profile (quick unless HYPOTHESIS_PROFILE=long; tests/conftest.py refuses others)."""
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
