"""HTTP framing abuse: CL+TE, duplicate Content-Length, malformed chunks, oversized and flooded headers.

Each request hides a second request behind its ambiguous part; the proxy must answer 400,
close the connection, let nothing through to OpenSearch, and keep serving.
"""

import pytest

from lab.reliability.abuse_framing import FRAMING_CASES
from lab.reliability.abuse_runner import run_case


@pytest.mark.parametrize("case", FRAMING_CASES, ids=lambda case: case.name)
def test_framing_abuse_has_its_expected_outcome(abuse_target, case):
    result = run_case(abuse_target, case)
    assert result.ok, result.problems
