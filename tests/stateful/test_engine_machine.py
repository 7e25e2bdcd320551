"""Runs the engine state machine (tests/stateful/machine.py) under the selected profile.

`pytest -s tests/stateful/test_engine_machine.py` also prints how often each action
succeeded or reverted (and why), to judge how much of the state space a run reached.
"""

from hypothesis.stateful import run_state_machine_as_test

from . import machine


def test_engine_machine__random_sequences__invariants_hold(deployment, stateful_settings):
    machine.OUTCOMES.clear()
    try:
        run_state_machine_as_test(machine.EngineMachine, settings=stateful_settings)
    finally:
        print("\nstateful outcomes (action: result -> count):")
        for label, count in sorted(machine.OUTCOMES.items()):
            print(f"  {label} -> {count}")
