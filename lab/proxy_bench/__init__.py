"""`bench proxy`: closed-loop load, recorded replays, pass-through and rerank-stage benchmarks."""
