"""Hostile bodies: JSON 10,000 levels deep, gzip bombs, invalid UTF-8, NaN, duplicate keys, huge texts."""

import pytest

from lab.reliability.abuse_requests import BODY_CASES
from lab.reliability.abuse_runner import run_case


@pytest.mark.parametrize("case", BODY_CASES, ids=lambda case: case.name)
def test_hostile_bodies_have_their_expected_outcome(abuse_target, case):
    result = run_case(abuse_target, case)
    assert result.ok, result.problems
