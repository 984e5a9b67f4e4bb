"""Benchmark building blocks: candidate sets to score and the scorer benchmark itself."""
