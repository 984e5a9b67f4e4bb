"""Huge or negative size/from, and ext.rerank values of the wrong type."""

import pytest

from lab.reliability.abuse_requests import EXT_CASES, PAGING_CASES
from lab.reliability.abuse_runner import run_case


@pytest.mark.parametrize("case", PAGING_CASES + EXT_CASES, ids=lambda case: case.name)
def test_paging_and_rerank_knobs_have_their_expected_outcome(abuse_target, case):
    result = run_case(abuse_target, case)
    assert result.ok, result.problems
