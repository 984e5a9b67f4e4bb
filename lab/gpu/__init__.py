"""Scripts for the GPU machine (no OpenSearch, no network there): carries, sweeps, copies."""
