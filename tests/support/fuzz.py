"""How deep the suite fuzzes, one switch for every hypothesis test: HYPOTHESIS_PROFILE=quick
(the default, `make test`) or long (`make test-long`).

`make test` must stay well under 15 minutes on 2 cores, so its property and fuzz tests draw
a few dozen examples each: every property is exercised on every run, and a regression
found once is pinned as a plain test. `make test-long` draws the full counts (and runs the
stateful machines thousands of times) to search for new failures.
"""

from __future__ import annotations

import os

PROFILES = ("quick", "long")
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "quick")
LONG = PROFILE == "long"


def check_profile() -> None:
    """Refuse a profile name that would silently run the quick counts."""
    if PROFILE not in PROFILES:
        raise ValueError(f"HYPOTHESIS_PROFILE: expected 'quick' or 'long', got {PROFILE!r}")


def examples(quick: int, long: int) -> int:
    """max_examples for a hypothesis test: `quick` under `make test`, `long` under `make test-long`."""
    return long if LONG else quick
