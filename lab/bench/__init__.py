"""`bench scorer`: workloads, timing and the scorer benchmark run."""
