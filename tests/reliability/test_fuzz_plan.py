"""Property-based fuzzing of request planning: only documented errors, no ext.rerank upstream, sane windows."""

from hypothesis import HealthCheck, given, settings

from lab.reliability.fuzz_plan import deep_bodies, deep_body_problems, plan_problems, search_requests

BOUNDED = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@BOUNDED
@given(search_requests())
def test_planning_any_request_keeps_its_properties(request):
    assert plan_problems(request) == []


@settings(max_examples=100, deadline=None)
@given(deep_bodies())
def test_bodies_deeper_than_the_cap_are_refused_whole_or_truncated(case):
    assert deep_body_problems(case) == []
