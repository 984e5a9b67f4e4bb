"""Run a fuzzing property for a bounded number of hypothesis examples and count what happened.

Example:
    >>> from hypothesis import strategies as st
    >>> result = run_property("even", st.integers(0, 10).map(lambda n: 2 * n), lambda n: [] if n % 2 == 0 else ["odd"], 20)
    >>> result.failures, result.cases > 0
    (0, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class FuzzResult:
    """How many generated cases a property saw, whether it failed (0 or 1), and its minimal failing example."""

    name: str
    cases: int
    failures: int
    example: str = ""


def run_property(name: str, strategy, problems_of: Callable[[Any], list[str]], max_examples: int,
                 seed: int | None = None) -> FuzzResult:
    """Check `problems_of(case)` is empty for up to `max_examples` generated cases (no example database).

    Example:
        >>> from hypothesis import strategies as st
        >>> run_property("small", st.integers(0, 100), lambda n: ["big"] if n > 50 else [], 200).failures
        1
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as fixed_seed

    seen = [0]

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=seed is None,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(strategy)
    def check(case) -> None:
        seen[0] += 1
        problems = problems_of(case)
        assert not problems, f"{problems} for {case!r}"[:2000]

    if seed is not None:
        check = fixed_seed(seed)(check)
    try:
        check()
    except AssertionError as exc:
        return FuzzResult(name, seen[0], 1, str(exc))
    return FuzzResult(name, seen[0], 0)
