"""Coverage-guided fuzzing of request planning and response rewriting with atheris (optional).

Runs only when asked: `es-rerank bench reliability --atheris-runs N`, or
`python -m lab.reliability.atheris_harness -atheris_runs=N`. The same properties as the
hypothesis fuzzing are checked; a violated property raises, which atheris reports as a crash.
"""

from __future__ import annotations

import sys

import numpy as np

from es_rerank.proxy.plan import RerankSpec, SearchRequest
from lab.reliability.fuzz_plan import plan_problems
from lab.reliability.fuzz_rewrite import RewriteCase, rewrite_problems

PATHS = ("/docs/_search", "/logs-1/_search", "/_search", "/docs,other/_search", "/docs/_count")


class PropertyViolated(AssertionError):
    """A fuzzed input broke one of the stated properties."""


def one_input(data: bytes) -> None:
    """Turn atheris' bytes into a planning case and a rewriting case; raise when a property fails.
    """
    import atheris

    fdp = atheris.FuzzedDataProvider(data)
    method = "POST" if fdp.ConsumeBool() else "GET"
    path = PATHS[fdp.ConsumeIntInRange(0, len(PATHS) - 1)]
    query_string = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))
    body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 400))
    problems = plan_problems(SearchRequest(method, path, query_string, {"Content-Type": "application/json"}, body))
    count = fdp.ConsumeIntInRange(0, 30)
    hits = [{"_id": f"d{i}", "_score": float(count - i), "_source": {"text": fdp.ConsumeUnicodeNoSurrogates(8)}}
            for i in range(count)]
    spec = RerankSpec("q", ("text",), window=fdp.ConsumeIntInRange(1, 40), start=fdp.ConsumeIntInRange(0, 40),
                      size=fdp.ConsumeIntInRange(1, 40), deadline_s=1.0, provenance=fdp.ConsumeBool())
    window = min(spec.window, count)
    scores = np.asarray([fdp.ConsumeFloatInRange(-1e6, 1e6) for _ in range(window)], dtype=np.float32)
    response = {"took": 1, "hits": {"total": {"value": count, "relation": "eq"}, "max_score": float(count) or None,
                                    "hits": hits}}
    problems += rewrite_problems(RewriteCase(response, spec, scores))
    if problems:
        raise PropertyViolated(problems)


def main(argv: list[str]) -> None:
    """Run atheris over `one_input` with its command-line flags (e.g. -atheris_runs=100000).
    """
    import atheris

    atheris.instrument_all()
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
