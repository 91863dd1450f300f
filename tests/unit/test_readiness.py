"""`dependency_outcome`: what a dependency's status means for a waiting task (DESIGN 3)."""

from __future__ import annotations

import pytest
from taskgrove.domain import statuses
from taskgrove_server.engine.readiness import Outcome, dependency_outcome


@pytest.mark.parametrize("required", [True, False])
@pytest.mark.parametrize("status", [statuses.PENDING, statuses.IN_PROGRESS])
def test_unfinished_dependency_is_waited_for(status: str, required: bool) -> None:
    # Optional dependencies are waited for too, not skipped.
    assert dependency_outcome(status, required=required) is Outcome.WAIT


@pytest.mark.parametrize("required", [True, False])
def test_completed_dependency_satisfies(required: bool) -> None:
    assert dependency_outcome(statuses.COMPLETED, required=required) is Outcome.SATISFIED


def test_required_failed_dependency_fails_the_dependent() -> None:
    assert dependency_outcome(statuses.FAILED, required=True) is Outcome.FAIL


def test_required_cancelled_dependency_cancels_the_dependent() -> None:
    assert dependency_outcome(statuses.CANCELLED, required=True) is Outcome.CANCEL


@pytest.mark.parametrize("status", [statuses.FAILED, statuses.CANCELLED])
def test_optional_dependency_that_ends_badly_does_not_block(status: str) -> None:
    assert dependency_outcome(status, required=False) is Outcome.SATISFIED


def test_missing_required_dependency_fails_rather_than_waits_forever() -> None:
    assert dependency_outcome(None, required=True) is Outcome.FAIL


def test_missing_optional_dependency_does_not_block() -> None:
    assert dependency_outcome(None, required=False) is Outcome.SATISFIED


@pytest.mark.parametrize("required", [True, False])
@pytest.mark.parametrize("status", statuses.ALL)
def test_every_status_has_an_outcome_and_only_unfinished_ones_wait(
    status: str, required: bool
) -> None:
    outcome = dependency_outcome(status, required=required)
    assert (outcome is Outcome.WAIT) == (status not in statuses.TERMINAL)
