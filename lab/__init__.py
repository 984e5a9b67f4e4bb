"""The lab: benchmarks, reliability and load tooling, GPU-machine scripts.

Run from a checkout (the repository root on `sys.path`); none of it is in the wheel, and
nothing in `es_rerank` imports it except the `es-rerank bench` group, which looks for this
folder beside the installed package.
"""
