"""Property-based fuzzing of response rewriting: pages tile the reranked window, nothing duplicated or lost."""

from hypothesis import HealthCheck, given, settings

from lab.reliability.fuzz_rewrite import rewrite_cases, rewrite_problems


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rewrite_cases())
def test_rewriting_any_response_keeps_its_properties(case):
    assert rewrite_problems(case) == []
