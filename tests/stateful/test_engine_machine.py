"""Runs the engine state machine (tests/stateful/machine.py) under the selected profile."""

from hypothesis.stateful import run_state_machine_as_test

from .machine import EngineMachine


def test_engine_machine__random_sequences__invariants_hold(deployment, stateful_settings):
    run_state_machine_as_test(EngineMachine, settings=stateful_settings)
