"""Run abuse cases against a proxy: check each expected outcome, then that the proxy still serves,
that the decoy upstream saw nothing, and that no smuggled request reached OpenSearch.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, Sequence

from lab.reliability.abuse_framing import FRAMING_CASES
from lab.reliability.abuse_requests import REQUEST_CASES
from lab.reliability.abuse_slow import SLOW_CASES
from lab.reliability.abuse_target import SMUGGLED_INDEX, AbuseTarget, CustomCase, RawCase, normal_search
from lab.reliability.rawhttp import RawReply, exchange

CATALOGUE: tuple[RawCase | CustomCase, ...] = FRAMING_CASES + REQUEST_CASES + SLOW_CASES
SERVING_BOUND_S = 5.0
_OPAQUE = re.compile(rb"\r\nX-Opaque-Id: ([^\r\n]+)\r\n", re.IGNORECASE)


@dataclass(frozen=True)
class CaseResult:
    """One case's outcome: the problems found (none means the expected outcome happened)."""

    name: str
    family: str
    problems: tuple[str, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        """True when the case had its expected outcome.

        Example:
            >>> CaseResult("x", "body", (), 0.1).ok
            True
        """
        return not self.problems


def run_cases(target: AbuseTarget, cases: Sequence[RawCase | CustomCase],
              on_result: Callable[[CaseResult], None] | None = None) -> list[CaseResult]:
    """Run `cases` one after another; `on_result` sees each result as it comes.
    """
    results = []
    for case in cases:
        result = run_case(target, case)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def run_case(target: AbuseTarget, case: RawCase | CustomCase) -> CaseResult:
    """One case and its aftermath checks.
    """
    started = time.monotonic()
    decoy_before = target.decoy.connections
    try:
        problems = case.run(target) if isinstance(case, CustomCase) else check_raw(target, case)
    except Exception as exc:  # a broken case is a failed case, not a crashed run
        problems = [f"the case itself raised {type(exc).__name__}: {exc}"]
    problems += aftermath(target, decoy_before)
    return CaseResult(case.name, case.family, tuple(problems), time.monotonic() - started)


def check_raw(target: AbuseTarget, case: RawCase) -> list[str]:
    """Send the case's bytes and compare the answer with its `Expect`.
    """
    data = case.build(target)
    reply = exchange(target.proxy_url, data)
    expect = case.expect
    problems = []
    if reply.status not in expect.statuses:
        problems.append(f"status {reply.status or reply.error}, expected one of {list(expect.statuses)}: "
                        f"{reply.body[:200]!r}")
    if expect.closed and not reply.closed:
        problems.append("the connection stayed open; expected the proxy to close it")
    if expect.error_type and reply.error_type() != expect.error_type:
        problems.append(f"error type {reply.error_type()!r}, expected {expect.error_type!r}")
    problems += _origin_problems(data, reply, expect.origin)
    if reply.extra:
        problems.append(f"bytes followed the response unasked (a smuggled request answered?): {reply.extra[:120]!r}")
    if expect.same_as_direct:
        problems += _direct_problems(target, data, reply)
    return problems


def _origin_problems(data: bytes, reply: RawReply, origin: str) -> list[str]:
    """OpenSearch echoes X-Opaque-Id on every answer; the proxy's own answers never carry it."""
    if not origin or reply.status == 0:
        return []
    sent = _OPAQUE.search(data)
    if sent is None:
        return [f"case sends no X-Opaque-Id, so its origin {origin!r} cannot be checked"]
    echoed = reply.headers.get("x-opaque-id")
    if origin == "opensearch" and echoed != sent.group(1).decode("latin-1"):
        return [f"expected OpenSearch's own answer (X-Opaque-Id echoed), got {reply.status} without it: "
                f"{reply.body[:200]!r}"]
    if origin == "proxy" and echoed is not None:
        return [f"expected the proxy to answer itself, but OpenSearch saw the request ({reply.status}): "
                f"{reply.body[:200]!r}"]
    return []


def _direct_problems(target: AbuseTarget, data: bytes, reply: RawReply) -> list[str]:
    direct = exchange(target.opensearch_url, data)
    if direct.status != reply.status:
        return [f"status {reply.status or reply.error} through the proxy, {direct.status or direct.error} directly"]
    if direct.status >= 400 and direct.body != reply.body:
        return [f"error body differs from OpenSearch's own: {reply.body[:200]!r} vs {direct.body[:200]!r}"]
    return []


def aftermath(target: AbuseTarget, decoy_before: int) -> list[str]:
    """The proxy still serves an ordinary search, the decoy saw nothing new, no smuggled index exists.
    """
    problems = []
    reply = exchange(target.proxy_url, normal_search(target), timeout_s=SERVING_BOUND_S + 5)
    if reply.status != 200 or reply.seconds > SERVING_BOUND_S:
        problems.append(f"afterwards an ordinary search got {reply.status or reply.error} after {reply.seconds:.2f}s")
    if target.decoy.connections != decoy_before:
        problems.append(f"the decoy upstream got {target.decoy.connections - decoy_before} connection(s): "
                        f"{target.decoy.received[:200]!r}")
    if smuggled_index_exists(target.opensearch_url):
        problems.append(f"index {SMUGGLED_INDEX} exists: a smuggled request reached OpenSearch")
    return problems


def smuggled_index_exists(opensearch_url: str) -> bool:
    """Whether the index a smuggled request would create exists on the node.
    """
    request = urllib.request.Request(f"{opensearch_url}/{SMUGGLED_INDEX}", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=10):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code != 404
