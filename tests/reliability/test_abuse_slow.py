"""Slow clients: slowloris headers and stalled bodies get 408 or wait alone; others are served meanwhile."""

import pytest

from lab.reliability.abuse_runner import run_case
from lab.reliability.abuse_slow import SLOW_CASES


@pytest.mark.parametrize("case", SLOW_CASES, ids=lambda case: case.name)
def test_slow_clients_do_not_hold_up_others(abuse_target, case):
    result = run_case(abuse_target, case)
    assert result.ok, result.problems
