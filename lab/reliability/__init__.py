"""The reliability suite: load with faults, soak, abuse cases and fuzzing of the proxy.

`es-rerank bench reliability` runs the long parts; tests/reliability/ runs the fast parts in CI.
Everything here talks to loopback only, and every loop is bounded in count and time.
"""
