"""Paths and Host tricks: `..`, encoded slashes, absolute URIs and Host headers aimed at a decoy upstream.

The decoy is a real listener; after every case it must still have seen no connection at all.
"""

import pytest

from lab.reliability.abuse_requests import HOST_CASES, PATH_CASES
from lab.reliability.abuse_runner import run_case


@pytest.mark.parametrize("case", PATH_CASES + HOST_CASES, ids=lambda case: case.name)
def test_paths_and_hosts_never_reach_anything_but_the_configured_upstream(abuse_target, case):
    result = run_case(abuse_target, case)
    assert result.ok, result.problems
    assert abuse_target.decoy.connections == 0
